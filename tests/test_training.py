"""Vanilla `Trainer` fine-tuning: the auxiliary loss is trained, weighted right under gradient accumulation,
logged, and survives LoRA and resume."""

import math

import pytest
import torch
from transformers import Trainer, TrainingArguments

from helpers import synthetic_dataset, tiny_model, video_batch
from llava_next_ar.training_llava_next_ar import LossComponentsCallback, add_loss_components_logging


def make_trainer(tmp_path, model=None, dataset=None, eval_dataset=None, **overrides) -> Trainer:
    arguments = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        gradient_accumulation_steps=1,
        learning_rate=1e-2,
        max_steps=2,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        data_seed=0,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    arguments.update(overrides)
    trainer = Trainer(
        model=model if model is not None else tiny_model(dtype=torch.float32),
        args=TrainingArguments(**arguments),
        train_dataset=dataset if dataset is not None else synthetic_dataset(),
        eval_dataset=eval_dataset,
    )
    add_loss_components_logging(trainer)
    return trainer


def parameters(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("accumulation", [1, 2])
def test_trainer_trains_the_predictor_and_logs_every_loss(tmp_path, accumulation):
    trainer = make_trainer(
        tmp_path, per_device_train_batch_size=4 // accumulation, gradient_accumulation_steps=accumulation
    )
    before = parameters(trainer.model)
    trainer.train()
    after = parameters(trainer.model)
    predictor = [n for n in before if n.startswith("autoregressive_module.predictor.")]
    assert all(not torch.equal(before[n], after[n]) for n in predictor if "memory_null" not in n)
    teacher = [n for n in before if n.startswith("autoregressive_module.teacher.")]
    assert teacher and all(torch.equal(before[n], after[n]) for n in teacher)
    logs = [entry for entry in trainer.state.log_history if "loss" in entry and "main_loss" in entry]
    assert len(logs) == 2  # every logging step
    for entry in logs:
        assert entry["autoregressive_loss"] > 0
        # Trainer's `loss` (mean over the window's micro-batches) = main + weighted auxiliary
        assert math.isclose(entry["loss"], entry["main_loss"] + entry["autoregressive_loss"], rel_tol=1e-4)


def test_auxiliary_weight_is_the_same_with_and_without_gradient_accumulation(tmp_path):
    """Batch 4 x GA 1 and batch 2 x GA 2 take the same optimizer steps and log the same losses."""
    results = []
    for batch_size, accumulation in ((4, 1), (2, 2)):
        trainer = make_trainer(
            tmp_path / f"ga{accumulation}", per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation, max_steps=1, learning_rate=1e-3, optim="sgd",
        )
        trainer.train()
        log = next(entry for entry in trainer.state.log_history if "main_loss" in entry)
        results.append((parameters(trainer.model), log))
    (weights_1, log_1), (weights_2, log_2) = results
    for name in weights_1:
        torch.testing.assert_close(weights_1[name], weights_2[name], rtol=1e-5, atol=1e-6, msg=name)
    for key in ("loss", "main_loss", "autoregressive_loss"):
        assert math.isclose(log_1[key], log_2[key], rel_tol=1e-4), (key, log_1[key], log_2[key])


def test_loss_components_are_window_means_of_the_model_outputs(tmp_path):
    """The logged components equal the mean of what the model returned on the window's micro-batches."""
    trainer = make_trainer(tmp_path, per_device_train_batch_size=2, gradient_accumulation_steps=2, max_steps=2,
                           logging_steps=2, learning_rate=0.0)
    seen = []
    trainer.model.register_forward_hook(
        lambda module, args, output: seen.append((output.main_loss.item(), output.autoregressive_loss.item()))
        if module.training else None
    )
    trainer.train()
    log = next(entry for entry in trainer.state.log_history if "main_loss" in entry)
    assert len(seen) == 4
    assert math.isclose(log["main_loss"], sum(m for m, _ in seen) / 4, rel_tol=1e-5)
    assert math.isclose(log["autoregressive_loss"], sum(a for _, a in seen) / 4, rel_tol=1e-5)


def test_lora_trains_adapters_and_predictor_not_teacher(tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    model = get_peft_model(
        tiny_model(dtype=torch.float32),
        LoraConfig(r=4, lora_alpha=8, target_modules=r".*language_model.*\.(q_proj|v_proj)",
                   modules_to_save=["predictor"]),
    )
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora_" in n for n in trainable) and any("predictor" in n for n in trainable)
    assert not any("teacher" in n or "vision_tower" in n for n in trainable)
    before = parameters(model)
    trainer = make_trainer(tmp_path, model=model)
    trainer.train()
    after = parameters(model)
    assert any(not torch.equal(before[n], after[n]) for n in before if "lora_" in n)
    assert any(not torch.equal(before[n], after[n]) for n in before if "modules_to_save" in n)
    assert all(torch.equal(before[n], after[n]) for n in before if "teacher" in n)
    assert any(entry.get("autoregressive_loss", 0) > 0 for entry in trainer.state.log_history)

    model.save_pretrained(tmp_path / "adapter")
    reloaded = PeftModel.from_pretrained(tiny_model(dtype=torch.float32), tmp_path / "adapter")
    batch = video_batch(dtype=torch.float32)
    with torch.no_grad():
        expected, actual = model.eval()(**batch), reloaded.eval()(**batch)
    assert torch.equal(expected.loss, actual.loss)


def test_resume_reaches_the_same_weights_and_losses(tmp_path):
    """4 steps straight == 2 steps, stop, resume from the checkpoint, 2 more (bit-identical on CPU)."""
    straight = make_trainer(tmp_path / "straight", max_steps=4, per_device_train_batch_size=2)
    straight.train()
    first = make_trainer(tmp_path / "resumed", max_steps=4, per_device_train_batch_size=2, save_strategy="steps",
                         save_steps=2)
    first.train()  # runs all 4 steps, leaves checkpoint-2 behind
    resumed = make_trainer(tmp_path / "resumed", max_steps=4, per_device_train_batch_size=2)
    resumed.train(resume_from_checkpoint=str(tmp_path / "resumed" / "checkpoint-2"))
    a, b = parameters(straight.model), parameters(resumed.model)
    assert all(torch.equal(a[n], b[n]) for n in a)
    logs = lambda t: [(e["step"], e["loss"], e["main_loss"], e["autoregressive_loss"])  # noqa: E731
                      for e in t.state.log_history if "main_loss" in e]
    assert [entry[0] for entry in logs(straight)] == [1, 2, 3, 4]
    assert logs(resumed) == logs(straight)  # steps 1-2 restored from the checkpoint's state, 3-4 recomputed


def test_callback_without_add_helper_still_fills_log_history(tmp_path):
    """Passed the plain way (`callbacks=[...]`), the components still reach `state.log_history`."""
    trainer = Trainer(
        model=tiny_model(dtype=torch.float32),
        args=TrainingArguments(output_dir=str(tmp_path), max_steps=1, logging_steps=1, report_to=[], use_cpu=True,
                               per_device_train_batch_size=4, save_strategy="no", disable_tqdm=True),
        train_dataset=synthetic_dataset(),
        callbacks=[LossComponentsCallback()],
    )
    trainer.train()
    assert any("autoregressive_loss" in entry for entry in trainer.state.log_history)


def test_evaluate_logs_the_loss_components(tmp_path):
    """`Trainer.evaluate` (alone, and during training) reports `eval_main_loss` and `eval_autoregressive_loss`, the
    means over the evaluation batches, next to `eval_loss` = their sum; training logs are not mixed in."""
    trainer = make_trainer(tmp_path, eval_dataset=synthetic_dataset(4), per_device_eval_batch_size=2,
                           eval_strategy="steps", eval_steps=1, learning_rate=0.0)
    seen = []
    trainer.model.register_forward_hook(
        lambda module, args, output: seen.append((output.main_loss.item(), output.autoregressive_loss.item()))
        if not module.training else None
    )
    metrics = trainer.evaluate()
    assert len(seen) == 2
    assert math.isclose(metrics["eval_main_loss"], sum(m for m, _ in seen) / 2, rel_tol=1e-5)
    assert math.isclose(metrics["eval_autoregressive_loss"], sum(a for _, a in seen) / 2, rel_tol=1e-5)
    assert math.isclose(metrics["eval_loss"], metrics["eval_main_loss"] + metrics["eval_autoregressive_loss"],
                        rel_tol=1e-4)
    assert trainer.state.log_history[-1]["eval_autoregressive_loss"] == metrics["eval_autoregressive_loss"]
    assert "main_loss" not in metrics

    trainer.train()
    evaluations = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    assert len(evaluations) == 2 and all("eval_autoregressive_loss" in entry for entry in evaluations)
    assert evaluations[-1]["eval_main_loss"] == pytest.approx(metrics["eval_main_loss"], rel=1e-5)  # lr 0
