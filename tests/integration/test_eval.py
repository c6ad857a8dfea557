"""`raytune-llm eval` on the tiny model: the same answers as a plain transformers scorer, in both
prompt styles, 0- and 5-shot; several checkpoints in one table; bad input refused before Ray; and
a LoRA adapter trained on demo-style questions beats the untrained model."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from raytune_llm.cli.main import main
from raytune_llm.config import load_config
from raytune_llm.data import demo_eval
from raytune_llm.eval.runner import run_eval
from raytune_llm.eval.tasks import Task, load_task

ROOT = Path(__file__).resolve().parents[2]
PREAMBLE = {
    "en": "The following are multiple choice questions (with answers) about {}.\n\n",
    "zh": "以下是中国关于{}考试的单项选择题，请选出其中的正确答案。\n\n",
}
CUE = {"en": "\nAnswer:", "zh": "\n答案："}


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory) -> Path:
    """Task folders the model never saw: 32 questions each, MMLU (en) and C-Eval (zh) CSVs."""
    root = tmp_path_factory.mktemp("tasks")
    for lang in ("en", "zh"):
        demo_eval.write_task(root / f"unseen_{lang}", lang, seed=11, sizes={"dev": 5, "test": 8})
    return root


def settings(model: Path, task_dir: Path, **values) -> dict:
    return {"model_name_or_path": str(model), "template": "llama3", "task_dir": str(task_dir),
            "batch_size": 8, "ray_num_workers": 1, **values}  # fmt: skip


# ---- an independent scorer: plain transformers, one question at a time -------------------------


def text(q, lang: str, strip: bool = False) -> str:
    head = q.question.strip() if strip else q.question
    return head + "".join(f"\n{c}. {o}" for c, o in zip("ABCD", q.options, strict=True)) + CUE[lang]


def chat_prompt(tokenizer, subject, i: int, q, n_shot: int, lang: str) -> tuple[list, list]:
    """LLaMA-Factory: shots drawn per question by random.Random(f"{seed}/{subject}/{i}")."""
    shots = random.Random(f"42/{subject.key}/{i}").sample(subject.dev, n_shot) if n_shot else []
    turns = [t for s in shots for t in ({"role": "user", "content": text(s, lang)},
                                        {"role": "assistant", "content": s.answer})]  # fmt: skip
    turns.append({"role": "user", "content": text(q, lang)})
    turns[0]["content"] = PREAMBLE[lang].format(subject.name) + turns[0]["content"]
    ids = tokenizer.apply_chat_template(turns, add_generation_prompt=True, return_dict=False)
    return [list(ids)], [[tokenizer.encode(c, add_special_tokens=False)[-1]] for c in "ABCD"]


def harness_prompt(tokenizer, subject, q, n_shot: int, lang: str) -> tuple[list, list]:
    """lm-evaluation-harness: the first k dev rows; each continuation " X" scored whole."""
    parts = [f"{text(s, lang, strip=True)} {s.answer}" for s in subject.dev[:n_shot]]
    context = PREAMBLE[lang].format(subject.name) + "\n\n".join([*parts, text(q, lang, True)])
    ctx = tokenizer.encode(context, add_special_tokens=False)
    conts = [tokenizer.encode(f"{context} {c}", add_special_tokens=False)[len(ctx) :]
             for c in "ABCD"]  # fmt: skip
    return [ctx] * 4, conts


def loglikelihood(model, context: list[int], continuation: list[int]) -> float:
    ids = torch.tensor([context + continuation])
    with torch.no_grad():
        logprobs = model(ids).logits[0].log_softmax(-1)
    n = len(context)
    return sum(float(logprobs[n - 1 + j, t]) for j, t in enumerate(continuation))


def independent(model, tokenizer, task: Task, style: str, n_shot: int, lang: str) -> dict:
    out: dict[str, dict[str, str]] = {}
    for subject in task.subjects:
        for i, q in enumerate(subject.questions):
            if style == "harness":  # four continuations, each scored whole
                contexts, conts = harness_prompt(tokenizer, subject, q, n_shot, lang)
                scores = [loglikelihood(model, c, t) for c, t in zip(contexts, conts, strict=True)]
            else:  # one next token
                contexts, conts = chat_prompt(tokenizer, subject, i, q, n_shot, lang)
                with torch.no_grad():
                    last = model(torch.tensor(contexts)).logits[0, -1]
                scores = [float(last[t[0]]) for t in conts]
            out.setdefault(subject.key, {})[str(i)] = "ABCD"[scores.index(max(scores))]
    return out


CASES = [("llamafactory", 0, "en"), ("llamafactory", 5, "zh"), ("harness", 0, "en"),
         ("harness", 5, "en")]  # fmt: skip


@pytest.fixture(scope="module")
def merged(tiny_llama_dir, tiny_lora_adapters):
    """The tiny model with the random "beta" LoRA merged (its answers vary more than the base's)."""
    from peft import PeftModel

    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    model = PeftModel.from_pretrained(base, tiny_lora_adapters["beta"]).merge_and_unload()
    return model, AutoTokenizer.from_pretrained(tiny_llama_dir)


@pytest.mark.parametrize(("style", "n_shot", "lang"), CASES)
def test_answers_equal_an_independent_scorer(
    ray_local, tiny_llama_dir, tiny_lora_adapters, task_dir, merged, style, n_shot, lang
):
    values = settings(tiny_llama_dir, task_dir, task=f"unseen_{lang}_test", n_shot=n_shot,
                      eval_style=style, lang=lang, seed=42,
                      adapter_name_or_path=tiny_lora_adapters["beta"])  # fmt: skip
    result = run_eval(load_config(None, values=values), log=lambda *_: None)
    task = load_task(task_dir, f"unseen_{lang}_test", n_shot)
    expected = independent(*merged, task, style, n_shot, lang)
    assert result.scores == {"model": expected}
    letters = [a for s in expected.values() for a in s.values()]
    assert len(set(letters)) > 1  # the model does not answer one letter throughout
    answers = [(expected[s.key][str(i)], q.answer) for s in task.subjects
               for i, q in enumerate(s.questions)]  # fmt: skip
    assert result.tallies["model"]["Average"].correct == sum(a == b for a, b in answers)


# ---- the command: several checkpoints, results files, refusals ----------------------------------


def write_yaml(path: Path, values: dict) -> Path:
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in values.items()))
    return path


def test_checkpoints_of_a_run_score_side_by_side(
    ray_local, tiny_llama_dir, tiny_lora_adapters, task_dir, merged, tmp_path, capsys
):
    run = tmp_path / "run"  # an output_dir: checkpoint-2 and checkpoint-10 (step order, not names)
    shutil.copytree(tiny_lora_adapters["beta"], run / "checkpoint-10")
    shutil.copytree(tiny_lora_adapters["alpha"], run / "checkpoint-2")
    save = tmp_path / "results"
    values = settings(tiny_llama_dir, task_dir, task="unseen_en_test", n_shot=0,
                      eval_checkpoints=str(run), save_dir=str(save))  # fmt: skip
    assert main(["eval", str(write_yaml(tmp_path / "eval.yaml", values))]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.split()[:1] == ["n"])
    assert header.split() == ["n", "checkpoint-2", "checkpoint-10"]
    assert "Average" in out and "STEM" in out and str(save) in out
    assert sorted(p.name for p in save.iterdir()) == [
        "checkpoint-10",
        "checkpoint-2",
        "results.log",
    ]
    log = (save / "results.log").read_text().splitlines()
    assert log[0].startswith("# unseen_en_test, 0-shot") and log[1].split() == header.split()
    results = {n: json.loads((save / n / "results.json").read_text()) for n in
               ("checkpoint-2", "checkpoint-10")}  # fmt: skip
    task = load_task(task_dir, "unseen_en_test")
    assert results["checkpoint-10"] == independent(*merged, task, "llamafactory", 0, "en")
    assert results["checkpoint-2"] != results["checkpoint-10"]
    assert list(results["checkpoint-2"]) == [s.key for s in task.subjects]
    assert list(results["checkpoint-2"]["counting"]) == [str(i) for i in range(8)]
    for name in results:
        assert (save / name / "results.log").read_text().splitlines()[1].split() == ["n", name]


def bad_task_dir(root: Path) -> Path:
    folder = demo_eval.write_task(root / "bad", "en", seed=5, sizes={"dev": 3, "test": 4})
    csv = folder / "data" / "test" / "last_letter_test.csv"
    lines = csv.read_text().splitlines()
    lines[2] = ",".join(lines[2].split(",")[:5])  # line 3 loses a column
    csv.write_text("\n".join(lines) + "\n")
    demo_eval.write_task(root / "ghost", "en", seed=5, sizes={"dev": 3, "test": 4})
    mapping = json.loads((root / "ghost" / "mapping.json").read_text())
    mapping["astronomy"] = {"name": "astronomy", "category": "STEM"}
    (root / "ghost" / "mapping.json").write_text(json.dumps(mapping))
    demo_eval.write_task(root / "fine", "en", seed=5, sizes={"dev": 3, "test": 4})
    return root


@pytest.mark.parametrize(
    ("task", "extra", "words"),
    [
        ("mmlu_test", {}, ["no task 'mmlu' in task_dir", "it holds bad, fine, ghost",
                           "downloads nothing"]),
        ("bad_test", {}, ["last_letter_test.csv, line 3: 5 columns, expected 6"]),
        ("ghost_test", {}, ["names subject 'astronomy'", "astronomy_test.csv is missing"]),
        ("fine_test", {"n_shot": 4}, ["n_shot 4:", "counting_dev.csv has only 3"]),
        ("fine_test", {"save_dir": "EXISTS"}, ["already exists", "never overwritten"]),
        ("fine_test", {"eval_checkpoints": "base", "adapter_name_or_path": "x"},
         ["set only one of them"]),
    ],
)  # fmt: skip
def test_bad_input_is_refused_before_anything_runs(tiny_llama_dir, tmp_path, capsys, task, extra,
                                                   words):  # fmt: skip
    tasks = bad_task_dir(tmp_path / "tasks")
    exists = tmp_path / "taken"
    exists.mkdir()
    save = exists if extra.get("save_dir") == "EXISTS" else tmp_path / "results"
    values = settings(tiny_llama_dir, tasks, task=task, **{"n_shot": 0, **extra,
                                                          "save_dir": str(save)})  # fmt: skip
    assert main(["eval", str(write_yaml(tmp_path / "eval.yaml", values))]) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err
    assert "Traceback" not in err
    assert not (tmp_path / "results").exists() and not any(exists.iterdir())


# ---- learning shows ------------------------------------------------------------------------------


def train_adapter(model_dir: Path, out: Path, steps: int = 200) -> Path:
    """LoRA on 0-shot demo-style questions (another seed than the committed task), loss on the
    answer letter, as the run's chat template renders them (LLaMA-Factory style)."""
    from peft import LoraConfig, get_peft_model

    from raytune_llm.eval.prompts import chat_messages
    from raytune_llm.eval.tasks import Question

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rng, examples = random.Random(1), []
    for subject, info in demo_eval.MAPPING["en"].items():
        for row in demo_eval.questions(subject, "en", 100, rng):
            q = Question(row[0], tuple(row[1:5]), row[5])
            turns = chat_messages(q, [], info["name"], "en")
            ids = tokenizer.apply_chat_template(turns, add_generation_prompt=True,
                                                return_dict=False)  # fmt: skip
            examples.append((list(ids), tokenizer.encode(row[5], add_special_tokens=False)[-1]))
    lora = LoraConfig(r=8, target_modules="all-linear")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), lora)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    for step in range(steps):
        batch = random.Random(step).sample(examples, 32)
        width = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([i + [0] * (width - len(i)) for i, _ in batch])
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch])
        logits = model(input_ids=ids, attention_mask=mask).logits
        last = torch.stack([logits[r, len(i) - 1] for r, (i, _) in enumerate(batch)])
        loss = torch.nn.functional.cross_entropy(last, torch.tensor([y for _, y in batch]))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(out)
    return out


@pytest.mark.slow
def test_a_trained_adapter_beats_the_untrained_model(ray_local, tiny_llama_dir, tmp_path):
    adapter = train_adapter(tiny_llama_dir, tmp_path / "sft")
    values = settings(tiny_llama_dir, ROOT / "data" / "evaluation", task="demo_en_test",
                      n_shot=0, eval_checkpoints=f"base,{adapter}")  # fmt: skip
    result = run_eval(load_config(None, values=values), log=lambda *_: None)
    base, trained = (result.tallies[n]["Average"].accuracy for n in ("base", "sft"))
    assert trained >= base + 0.2, (base, trained)
