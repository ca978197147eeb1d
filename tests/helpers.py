"""Small tasks for unit tests, behind the same contract as the real ones."""
from ehrmind.methods.ehrmind.prompts import FORMAT_HEAD, PromptTemplate
from ehrmind.tasks import Score

ECHO_PROMPT = PromptTemplate(
    task_prompt="Question: {question}",
    format_instruction=FORMAT_HEAD + '<think>\n...\n</think>\n<answer>\n{"answer": X}\n</answer>.',
    sft_format_instruction=FORMAT_HEAD + '<think>\n...\n</think>\n<answer>\n{"answer": X}\n</answer>.',
    record_fields=("question",), clean_tail=False, source="tests")


class EchoTask:
    """Correct when the answer JSON's "answer" equals gold["x"]."""
    name = "echo"
    prompt = ECHO_PROMPT
    answer_keys = ("answer",)

    def score(self, obj, gold):
        return Score(obj["answer"] == gold["x"], None, obj["answer"])
