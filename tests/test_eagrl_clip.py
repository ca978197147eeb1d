"""The entropy-aware adaptive upper clip: the bound per sequence, TRL's loss kept exactly, a real
GRPO step on a tiny random model; and DAPO as a baseline through TRL's own loss_type."""
import math

import pytest
import torch

from ehrmind import models
from ehrmind.methods.eagrl import clip
from ehrmind.methods.eagrl.clip import EntropyClipGRPOTrainer, adaptive_eps_high


def test_bounds_lie_in_range_and_follow_feature_entropy():
    # rows: mean feature entropy 2.0, 0.5, 4.0, (no feature tokens), 3.0; non-feature tokens are
    # given large entropies to show they are ignored
    entropies = torch.tensor([[1.0, 3.0, 9.0], [0.5, 9.0, 9.0], [4.0, 4.0, 9.0], [9.0, 9.0, 9.0], [9.0, 3.0, 9.0]])
    features = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 0]])
    eps = adaptive_eps_high(entropies, features, 0.2, 0.4)
    expected = [0.2 + 0.2 * 1.5 / 3.5, 0.2, 0.4, 0.2, 0.2 + 0.2 * 2.5 / 3.5]
    assert eps.tolist() == pytest.approx(expected)
    assert all(0.2 - 1e-7 <= e <= 0.4 + 1e-7 for e in eps.tolist())   # float32
    with_features = [0, 1, 2, 4]
    order_by_entropy = sorted(with_features, key=lambda i: [2.0, 0.5, 4.0, None, 3.0][i])
    assert [eps[i].item() for i in order_by_entropy] == sorted(eps[with_features].tolist())
    # degenerate batches: no spread, one sequence with features, none at all; a custom base
    assert adaptive_eps_high(torch.ones(2, 3), torch.ones(2, 3)).tolist() == pytest.approx([0.2, 0.2])
    assert adaptive_eps_high(entropies, features * torch.tensor([[1], [0], [0], [0], [0]])).tolist() == \
        pytest.approx([0.2] * 5)
    assert adaptive_eps_high(entropies, torch.zeros(5, 3), eps_no_features=0.3).tolist() == pytest.approx([0.3] * 5)


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(models.resolve(tiny_model))


def test_feature_token_mask_from_decoded_offsets(tokenizer):
    texts = ["<Subquestion>LDH?</Subquestion>\n<Answer>High.</Answer>\n<Final subquestion>Die?</Final subquestion>\n"
             "<Important Features>\n- Lactate dehydrogenase\n- hs-CRP, (%)lymphocyte\n</Important Features>\n"
             "<Final answer>0.7</Final answer>",
             "no feature block here", "<important features> </important features>"]
    rows = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    width = max(map(len, rows)) + 3
    ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows])
    keep = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    mask = clip.feature_token_mask(tokenizer, ids, keep)
    inside = tokenizer.decode(ids[0][mask[0].bool()])
    assert "Lactate dehydrogenase" in inside and "hs-CRP, (%)lymphocyte" in inside
    assert "Important" not in inside and "Final" not in inside and "Answer" not in inside
    assert mask[1].sum() == 0 and mask[2].sum() == 0 and (mask * (1 - keep)).sum() == 0


def _reward_by_length(completions, **_):
    # a random tiny model never writes the format: reward text length, so advantages are not all zero
    return [float(len(c[-1]["content"]) % 5) for c in completions]


def _trainer(tiny_model, tmp_path, cls=None, max_steps=1, **kwargs):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer
    location = models.resolve(tiny_model)
    tokenizer = AutoTokenizer.from_pretrained(location)
    tokenizer.padding_side = "left"
    net = AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32)
    trainer_keys = {"eps_min_high", "eps_max_high", "eps_no_features"}
    extra = {k: kwargs.pop(k) for k in list(kwargs) if k in trainer_keys}
    args = GRPOConfig(output_dir=str(tmp_path), max_steps=max_steps, per_device_train_batch_size=8,
                      num_generations=4, steps_per_generation=1, num_iterations=1, max_completion_length=8,
                      learning_rate=1e-2, beta=0.0, epsilon=0.2, temperature=1.0, logging_steps=1,
                      save_strategy="no", report_to="none", use_cpu=True, bf16=False, seed=0,
                      **{"loss_type": "dapo", **kwargs})
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": f"What is {i} plus 1?"}]} for i in range(8)])
    trainer = (cls or GRPOTrainer)(model=net, reward_funcs=[_reward_by_length], args=args, train_dataset=data,
                                   processing_class=tokenizer, **extra)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1   # Trainer.train() sets it; these tests call _compute_loss
    return trainer


def _batch(trainer, rows=4, prompt_len=3, length=6):
    g = torch.Generator().manual_seed(0)
    completion_mask = torch.ones(rows, length, dtype=torch.long)
    completion_mask[1, 4:] = 0
    batch = {"prompt_ids": torch.randint(100, 5000, (rows, prompt_len), generator=g),
             "prompt_mask": torch.ones(rows, prompt_len, dtype=torch.long),
             "completion_ids": torch.randint(100, 5000, (rows, length), generator=g),
             "completion_mask": completion_mask,
             "advantages": torch.tensor([1.0, -0.5, 0.7, -1.2]),
             "num_items_in_batch": completion_mask.sum()}
    with torch.no_grad():
        logps, entropies, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1),
            torch.cat([batch["prompt_mask"], completion_mask], 1), length, compute_entropy=True)
    return batch, logps, entropies


@pytest.mark.parametrize("loss_type", ["dapo", "grpo"])
@pytest.mark.parametrize("bound", [0.2, 0.4])
def test_fixed_bound_gives_trls_loss_exactly(tiny_model, tmp_path, loss_type, bound):
    ours = _trainer(tiny_model, tmp_path / "ours", EntropyClipGRPOTrainer, eps_min_high=bound, eps_max_high=bound,
                    eps_no_features=bound, loss_type=loss_type)
    trl = _trainer(tiny_model, tmp_path / "trl", epsilon_high=bound, loss_type=loss_type)
    batch, logps, _ = _batch(ours)
    noise = torch.linspace(-0.5, 0.5, logps.numel()).reshape(logps.shape)   # ratios from 0.6 to 1.65
    batch["old_per_token_logps"] = logps + noise
    batch["feature_mask"] = torch.tensor([[0, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0],
                                          [0, 0, 0, 1, 1, 1]])
    ours_loss, trl_loss = ours._compute_loss(ours.model, batch), trl._compute_loss(trl.model, batch)
    assert torch.equal(ours_loss, trl_loss)
    assert isinstance(ours.epsilon_high, float) and isinstance(ours.epsilon_low, float)   # restored after the call
    assert ours.last_eps_high.tolist() == pytest.approx([bound] * 4)


def test_adaptive_bound_is_applied_per_sequence(tiny_model, tmp_path):
    ours = _trainer(tiny_model, tmp_path / "ours", EntropyClipGRPOTrainer)
    trl = _trainer(tiny_model, tmp_path / "trl", epsilon_high=0.2)
    batch, logps, entropies = _batch(ours)
    batch["old_per_token_logps"] = logps - math.log(1.3)   # every ratio is 1.3
    # row 0 (A > 0): its highest-entropy token; row 2 (A > 0): its lowest; row 1: one token; row 3: none
    features = torch.zeros_like(batch["completion_mask"])
    features[0, entropies[0].argmax()] = 1
    features[2, entropies[2].argmin()] = 1
    features[1, 0] = 1
    batch["feature_mask"] = features
    loss = ours._compute_loss(ours.model, batch)
    eps = ours.last_eps_high
    assert eps[0].item() == pytest.approx(0.4) and eps[2].item() == pytest.approx(0.2)
    assert eps[3].item() == pytest.approx(0.2)
    assert 0.2 - 1e-7 <= eps[1].item() <= 0.4 + 1e-7
    # by hand: A > 0 keeps min(1.3, 1 + ε) of the ratio, A < 0 keeps 1.3 (the lower clip, 0.8, is not hit)
    adv, keep = batch["advantages"], batch["completion_mask"].float()
    coef = torch.where(adv > 0, torch.minimum(torch.tensor(1.3), 1 + eps), torch.tensor(1.3))
    expected = -(coef * adv * keep.sum(1)).sum() / keep.sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    # row 0 is not clipped here but is under TRL's fixed 0.2: the two losses differ by 0.1·A₀·|row 0|
    diff = trl._compute_loss(trl.model, batch) - loss
    assert diff.item() == pytest.approx(0.1 * 1.0 * 6 / keep.sum().item(), rel=1e-3)


def _changed(before, model):
    return [k for k, v in model.state_dict().items() if not torch.equal(before[k], v)]


class HalfFeatures(EntropyClipGRPOTrainer):
    """A random tiny model never writes <Important Features>: call the first half of every
    completion its feature list, so the adaptive path runs end to end."""

    def feature_char_span(self, text):
        return (0, max(1, len(text) // 2)) if text else None


def test_subclass_trains_and_changes_weights(tiny_model, tmp_path):
    trainer = _trainer(tiny_model, tmp_path, HalfFeatures, max_steps=2)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    assert _changed(before, trainer.model), "two GRPO steps left every weight unchanged"
    logged = [row for row in trainer.state.log_history if "eagrl/eps_high/max" in row]
    assert len(logged) == 2
    for row in logged:
        assert row["eagrl/eps_high/min"] == pytest.approx(0.2) and row["eagrl/eps_high/max"] == pytest.approx(0.4)
        assert row["eagrl/with_feature_tokens"] == 1.0


def test_dapo_baseline_is_trls_own_loss_type(tiny_model, tmp_path):
    from trl import GRPOConfig
    assert GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False).loss_type == "dapo"   # TRL 1.16's default
    # DAPO: token-level loss (loss_type="dapo") and clip-higher (ε_high = 0.28, the DAPO paper's)
    trainer = _trainer(tiny_model, tmp_path, loss_type="dapo", epsilon_high=0.28)
    assert trainer.loss_type == "dapo" and trainer.epsilon_high == 0.28
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    assert _changed(before, trainer.model)


def test_unclipped_loss_types_are_refused(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="clipped loss"):
        _trainer(tiny_model, tmp_path, EntropyClipGRPOTrainer, loss_type="cispo")
