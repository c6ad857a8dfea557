"""`raytune-llm chat` and `raytune-llm predict` on the tiny model, driven as a user would.

Chat streams the backend's greedy answer, keeps the conversation, forgets it on `clear` and ends
with exit code 0. Predict answers the demo eval data with Ray Data (the shipped predict example,
its model swapped for the tiny one plus a LoRA adapter made with peft) into
generated_predictions.jsonl in dataset order, refuses to overwrite it, and refuses bad configs
before Ray starts.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from raytune_llm.config import load_config
from raytune_llm.data.demo import alpaca_prompt
from raytune_llm.data.errors import surface_data_errors
from raytune_llm.data.pipeline import prediction_examples, prepare_data
from raytune_llm.infer.backend import build_backend
from raytune_llm.infer.nlg_metrics import NlgScores
from raytune_llm.model.generate.sampling import SamplingParams
from raytune_llm.model.loader import load_tokenizer

ROOT = Path(__file__).resolve().parents[2]
EXE = Path(sys.executable).with_name("raytune-llm")
EXAMPLE = ROOT / "examples" / "train_lora" / "llama3_lora_predict.yaml"
SYSTEM = "Be brief."
N = 24
GREEDY = SamplingParams(max_new_tokens=12, do_sample=False)  # the chat config's settings

pytestmark = pytest.mark.slow


def run_cli(*args: str, stdin: str = "", timeout: int = 300) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([str(EXE), *args], input=stdin.encode(), capture_output=True,
                          cwd=ROOT, env=env, timeout=timeout)  # fmt: skip
    return done.returncode, done.stdout.decode("utf-8"), done.stderr.decode("utf-8")


@pytest.fixture(scope="module")
def adapter(tiny_llama_dir, tmp_path_factory):
    """A LoRA adapter of the tiny model with random (non-zero) weights, so that it matters."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    lora = LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
    path = tmp_path_factory.mktemp("adapter") / "sft"
    get_peft_model(base, lora).save_pretrained(path)
    return path


# ---- chat ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chat_config(tiny_llama_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("chat") / "chat.yaml"
    path.write_text(
        f"model_name_or_path: {tiny_llama_dir}\ntemplate: llama3\ndo_sample: false\n"
        "max_new_tokens: 12\n"
    )
    return path


def answers_in(stdout: str) -> list[str]:
    """The assistant's answers, in order: what follows "Assistant: " up to the next prompt."""
    return [part.split("\n\nUser: ")[0] for part in stdout.split("Assistant: ")[1:]]


def test_chat_streams_keeps_history_and_clears(chat_config):
    q1, q2, q3 = "Name the first letter: a b c", "Count the letters: x y", "hi"
    backend = build_backend(load_config(chat_config))

    def answer(*turns: str) -> str:
        roles = ("user", "assistant")
        messages = [{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)]
        return backend.generate([backend.encode_chat(messages, SYSTEM)], GREEDY)[0].text

    a1 = answer(q1)
    a2 = answer(q1, a1, q2)
    assert a2 != answer(q2), "the test needs a second turn that depends on the first"
    a3 = answer(q3)
    assert a3 != answer(q1, a1, q2, a2, q3)

    code, out, err = run_cli("chat", str(chat_config), "--system", SYSTEM,
                             stdin=f"{q1}\n{q2}\nclear\n{q3}\nexit\nnever read\n")  # fmt: skip
    assert code == 0, err
    assert "Traceback" not in err
    assert "template: llama3" in out and f"system prompt: {SYSTEM}" in out and "`clear`" in out
    assert answers_in(out) == [a1, a2, a3]
    assert "History has been removed." in out


def test_chat_survives_a_long_prompt_and_ends_at_end_of_input(chat_config):
    from io import StringIO

    from raytune_llm.infer.chat import ChatSession, run_chat

    session = ChatSession(build_backend(load_config(chat_config)), GREEDY)
    out = StringIO()
    long = "a " * 5000  # more tokens than the tiny model's context
    assert run_chat(session, StringIO(f"{long}\nhi\n"), out) == 0  # no `exit`: end of input
    first, second = answers_in(out.getvalue())
    assert "context" in first and "clear" in first
    assert second and "context" not in second  # the session went on
    assert [m["content"] for m in session.history] == ["hi", second]

    class CtrlC(StringIO):
        def readline(self, *args: object) -> str:
            raise KeyboardInterrupt

    assert run_chat(session, CtrlC(), StringIO()) == 0


# ---- predict -------------------------------------------------------------------------------------


def predict_args(tiny_llama_dir: Path, adapter: Path, out: Path, *extra: str) -> list[str]:
    return [
        "predict",
        str(EXAMPLE),
        f"model_name_or_path={tiny_llama_dir}",
        f"adapter_name_or_path={adapter}",
        f"dataset_dir={ROOT / 'data'}",
        f"output_dir={out}",
        "overwrite_output_dir=false",
        f"max_samples={N}",
        "per_device_eval_batch_size=8",
        "max_new_tokens=8",
        "do_sample=false",
        *extra,
    ]


@pytest.fixture(scope="module")
def predicted(tiny_llama_dir, adapter, tmp_path_factory):
    out = tmp_path_factory.mktemp("predict") / "run"
    args = predict_args(tiny_llama_dir, adapter, out)
    code, stdout, stderr = run_cli(*args)
    assert code == 0, stderr
    return out, args, stdout


def test_predict_writes_every_answer_in_dataset_order(predicted, tiny_llama_dir, adapter):
    out, args, stdout = predicted
    assert f"predicted {N} examples" in stdout
    rows = [json.loads(line) for line in (out / "generated_predictions.jsonl").open()]
    records = json.loads((ROOT / "data" / "demo_alpaca_eval.json").read_text())[:N]
    assert [r["label"] for r in rows] == [r["output"] for r in records]
    assert all(set(r) == {"prompt", "predict", "label"} for r in rows)
    # The same prompts answered here by the backend (the adapter merged) give the same answers.
    cfg = load_config(EXAMPLE, args[2:])
    backend = build_backend(cfg)
    prompts = [
        backend.encode_chat([{"role": "user", "content": alpaca_prompt(r)}], r["system"])
        for r in records
    ]
    params = SamplingParams.from_config(cfg.generation)
    expected = [
        c.text for i in range(0, N, 8) for c in backend.generate(prompts[i : i + 8], params)
    ]
    assert [r["predict"] for r in rows] == expected
    base = build_backend(load_config(EXAMPLE, [*args[2:], "adapter_name_or_path=null"]))
    assert [c.text for c in base.generate(prompts[:8], params)] != expected[:8]  # it was merged
    decode = backend.tokenizer.decode
    assert [r["prompt"] for r in rows] == [decode(p, skip_special_tokens=False) for p in prompts]
    results = json.loads((out / "predict_results.json").read_text())
    assert results["predict_samples"] == N
    assert results["predict_generated_tokens"] > 0 and results["predict_runtime"] > 0
    nlg = NlgScores()  # BLEU-4 / ROUGE of these rows (tests/unit/test_nlg_metrics.py: the formula)
    for r in rows:
        nlg.add(r["predict"], r["label"])
    assert {k: results[k] for k in nlg.result()} == nlg.result()
    assert "BLEU-4" in stdout and "ROUGE-L" in stdout
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no leftovers


def test_predict_refuses_to_overwrite_and_bad_configs(predicted, tiny_llama_dir, adapter, tmp_path):
    out, args, _ = predicted
    before = (out / "generated_predictions.jsonl").read_bytes()
    code, _, err = run_cli(*args)
    assert code == 2 and "overwrite_output_dir" in err and "Traceback" not in err
    assert (out / "generated_predictions.jsonl").read_bytes() == before
    fresh = tmp_path / "fresh"
    for extra, words in (
        (["eval_dataset=no_such_data"], "no_such_data"),
        (["eval_dataset=null"], "eval_dataset"),
        (["stage=pt", "predict_with_generate=false"], "stage pt"),
    ):
        code, _, err = run_cli(*predict_args(tiny_llama_dir, adapter, fresh, *extra))
        assert code == 2, (extra, err)
        assert words in err and "Traceback" not in err, (extra, err)
    assert not fresh.exists()


def test_predict_answers_the_val_size_split_else_the_dataset(ray_local, tiny_llama_dir):
    def picked(**values):
        cfg = load_config(None, values={"model_name_or_path": str(tiny_llama_dir),
                                        "dataset_dir": str(ROOT / "data"), "template": "llama3",
                                        "max_samples": 200, **values})  # fmt: skip
        with surface_data_errors():
            ds, words, _ = prediction_examples(cfg, num_cpus=0.25)
            examples = [pickle.loads(r["_example"]) for r in ds.iter_rows()]
        return cfg, examples, words

    _, examples, words = picked(dataset="demo_alpaca", max_samples=50)  # no eval data: all
    assert len(examples) == 50 and words == "dataset demo_alpaca"
    cfg, examples, words = picked(dataset="demo_alpaca", val_size=0.2)
    assert words == "the val_size 0.2 split of dataset demo_alpaca"
    with surface_data_errors():  # the same examples training holds out
        held_out = prepare_data(cfg, functools.partial(load_tokenizer, cfg.model), num_cpus=0.25)
        assert 20 < len(examples) == held_out.eval.count() < 60
