"""GRPO's log-probabilities with each group's prompt run once.

TRL scores a step's rollouts as prompt + completion rows: the G completions of one prompt
repeat its tokens G times through the forward and the backward. With EHRMind's prompts (~300
tokens of instructions and record) and short completions, that repetition is most of a step's
compute. Here each run of identical prompt rows is forwarded once, its key/value cache repeated
for the G completions (a differentiable repeat: gradients of all G completions flow back
through the one prompt forward), and only the completion positions go through the LM head.
The result equals TRL's own (tested to float tolerance); on the CPU it makes a step several
times cheaper (`ehrmind bench`).

`SharedPromptMixin` goes before TRL's GRPOTrainer (or a subclass of it) in the bases. It is
used where the model is a plain transformers causal LM on one device; anything else (PEFT,
FSDP, multimodal inputs, MoE aux losses) falls back to TRL's own path.
"""
from __future__ import annotations

import torch


def prompt_runs(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> list[tuple[int, int]]:
    """[start, end) of each run of consecutive identical (prompt, mask) rows."""
    runs, start = [], 0
    for row in range(1, prompt_ids.size(0) + 1):
        if row == prompt_ids.size(0) or not (torch.equal(prompt_ids[row], prompt_ids[start])
                                              and torch.equal(prompt_mask[row], prompt_mask[start])):
            runs.append((start, row))
            start = row
    return runs


def shared_prompt_logps(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int,
                        temperature: float, compute_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probabilities (and entropies) of the last `logits_to_keep` tokens of each row."""
    backbone, head = model.get_decoder(), model.get_output_embeddings()
    split = input_ids.size(1) - logits_to_keep
    logps, entropies = [], []
    for start, end in prompt_runs(input_ids[:, :split], attention_mask[:, :split]):
        g = end - start
        real = attention_mask[start, :split].bool()
        prompt = input_ids[start:start + 1, :split][:, real]                  # left padding dropped
        out = backbone(input_ids=prompt, use_cache=True)
        cache, last = out.past_key_values, out.last_hidden_state[:, -1:]
        cache.batch_repeat_interleave(g)
        completion = input_ids[start:end, split:]
        n = prompt.size(1)
        mask = torch.cat([attention_mask.new_ones(g, n), attention_mask[start:end, split:]], dim=1)
        positions = torch.arange(n, n + completion.size(1), device=input_ids.device).expand(g, -1)
        hidden = backbone(input_ids=completion, attention_mask=mask, position_ids=positions, past_key_values=cache,
                          use_cache=True).last_hidden_state
        # the token at completion position t is predicted from position t - 1 (the prompt's last, for t = 0)
        hidden = torch.cat([last.expand(g, -1, -1), hidden[:, :-1]], dim=1)
        log_probs = torch.log_softmax(head(hidden).float() / temperature, dim=-1)
        logps.append(log_probs.gather(-1, completion.unsqueeze(-1)).squeeze(-1))
        if compute_entropy:
            entropies.append(-(log_probs.exp() * log_probs).sum(-1))
    return torch.cat(logps), torch.cat(entropies) if compute_entropy else None


class SharedPromptMixin:
    """Replaces GRPOTrainer's per-token log-probability pass with the shared-prompt one."""

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, **extra):
        plain = (not compute_aux_loss and not any(v is not None for v in extra.values())
                 and not hasattr(model, "peft_config") and self.accelerator.num_processes == 1)
        if not plain:
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, compute_aux_loss,
                **extra)
        model = self.accelerator.unwrap_model(model)
        with self.accelerator.autocast():
            logps, entropies = shared_prompt_logps(model, input_ids, attention_mask, logits_to_keep,
                                                   self.temperature, compute_entropy)
        return logps, entropies, None
