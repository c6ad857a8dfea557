"""Benchmark task folders (MMLU and C-Eval/CMMLU CSVs, zips), prompts in both styles, the table."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from raytune_llm.data import demo_eval
from raytune_llm.eval.prompts import chat_messages, harness_context, pick_shots
from raytune_llm.eval.report import format_table, tally
from raytune_llm.eval.tasks import Question, load_task, parse_task, read_questions
from raytune_llm.utils.errors import UserError

TASKS = Path(__file__).resolve().parents[2] / "data" / "evaluation"


def test_committed_demo_tasks_are_what_the_generator_writes(tmp_path):
    assert demo_eval.main([str(tmp_path)]) == 0
    written = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()}
    committed = {p.relative_to(TASKS) for p in TASKS.rglob("*") if p.is_file()}
    assert written == committed and len(written) == 2 * (1 + 3 * 4)  # mapping + 3 splits x 4
    for rel in written:
        assert (tmp_path / rel).read_bytes() == (TASKS / rel).read_bytes(), (
            f"data/evaluation/{rel} is stale: run `python -m raytune_llm.data.demo_eval`"
        )
    assert sum((TASKS / r).stat().st_size for r in committed) < 200_000


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_demo_answers_follow_from_the_questions(lang):
    task = load_task(TASKS, f"demo_{lang}_test", n_shot=5)
    assert [s.category for s in task.subjects] == [
        "STEM", "Humanities", "Social Sciences", "Other"
    ]  # fmt: skip
    for subject in task.subjects:
        letters = [q.answer for q in subject.questions]
        assert {letters.count(c) for c in "ABCD"} == {len(letters) // 4}  # guessing scores 25%
        for q in subject.questions + subject.dev:
            payload = q.question.split("：" if lang == "zh" else ":")[-1]
            payload = payload.removeprefix("说出字母 ").removesuffix(" 后面的字母。")
            payload = payload.removeprefix("Name the letter after ").rstrip(".").strip()
            answer = demo_eval.solve(subject.key, payload)
            assert q.options["ABCD".index(q.answer)] == answer, q


def test_mmlu_and_ceval_csvs_read_alike():
    mmlu = read_questions('"Q, with a comma",1,2,3,4,B\nplain?,a,b,c,d,d\n', "x.csv")
    ceval = read_questions(
        "id,question,A,B,C,D,answer,explanation\n"
        '0,"Q, with a comma",1,2,3,4,B,because\n1,plain?,a,b,c,d,d,\n',
        "y.csv",
    )
    cmmlu = read_questions(
        ',Question,A,B,C,D,Answer\n0,"Q, with a comma",1,2,3,4,B\n1,plain?,a,b,c,d,d\n', "z.csv"
    )
    assert mmlu == ceval == cmmlu
    assert mmlu[0] == Question("Q, with a comma", ("1", "2", "3", "4"), "B")
    for hidden in ("id,question,A,B,C,D\n0,q,a,b,c,d\n", "question,A,B,C,D,answer\nq,a,b,c,d,\n"):
        assert read_questions(hidden, "test.csv")[0].answer == ""  # C-Eval's test split


def test_bad_rows_name_the_file_and_line():
    text = 'fine,1,2,3,4,A\n"two\nlines",1,2,3,4,B\nshort,1,2,3,A\n'
    with pytest.raises(UserError, match=r"x\.csv, line 4: 5 columns, expected 6"):
        read_questions(text, "x.csv")
    with pytest.raises(UserError, match=r"x\.csv, line 1: answer 'E'"):
        read_questions("q,1,2,3,4,E\n", "x.csv")


def write_folder(root: Path, lang: str = "en") -> Path:
    return demo_eval.write_task(root / "t", lang, seed=3, sizes={"dev": 5, "val": 2, "test": 4})


def test_task_names_and_splits(tmp_path):
    write_folder(tmp_path)
    assert parse_task("mmlu_test") == ("mmlu", "test")
    assert parse_task("demo_en_validation") == ("demo_en", "val")
    task = load_task(tmp_path, "t_validation")
    assert task.size == 8 and not task.subjects[0].dev
    for bad in ("mmlu", "mmlu_train2", None):
        with pytest.raises(UserError, match="<name>_<split>"):
            parse_task(bad)


def test_a_zip_reads_as_its_folder(tmp_path):
    folder = write_folder(tmp_path / "src")
    plain = load_task(tmp_path / "src", "t_test", n_shot=5)
    inside = tmp_path / "lf" / "t"  # LLaMA-Factory's evaluation/mmlu/{mapping.json, mmlu.zip}
    inside.mkdir(parents=True)
    (inside / "mapping.json").write_text((folder / "mapping.json").read_text())
    with zipfile.ZipFile(inside / "t.zip", "w") as z:
        for p in (folder / "data").rglob("*.csv"):
            z.write(p, str(p.relative_to(folder)))
    whole = tmp_path / "whole"
    whole.mkdir()
    with zipfile.ZipFile(whole / "t.zip", "w") as z:  # the whole folder, under a prefix
        for p in folder.rglob("*"):
            if p.is_file():
                z.write(p, f"t/{p.relative_to(folder)}")
    for task_dir in (tmp_path / "lf", whole):
        zipped = load_task(task_dir, "t_test", n_shot=5)
        assert [(s.key, s.questions, s.dev) for s in zipped.subjects] == [
            (s.key, s.questions, s.dev) for s in plain.subjects
        ]


def test_task_errors_are_clear(tmp_path):
    folder = write_folder(tmp_path)
    missing = r"no task 'mmlu' in task_dir .*it holds t\b.*downloads nothing"
    with pytest.raises(UserError, match=missing):
        load_task(tmp_path, "mmlu_test")
    with pytest.raises(UserError, match=r"n_shot 6: .*counting_dev\.csv has only 5"):
        load_task(tmp_path, "t_test", n_shot=6)
    mapping = json.loads((folder / "mapping.json").read_text())
    mapping["algebra"] = {"name": "algebra", "category": "STEM"}
    (folder / "mapping.json").write_text(json.dumps(mapping))
    with pytest.raises(UserError, match=r"names subject 'algebra', but .*algebra_test\.csv"):
        load_task(tmp_path, "t_test")
    (folder / "mapping.json").write_text('{"counting": {"name": "counting"}}')
    with pytest.raises(UserError, match="wrong entries: counting"):
        load_task(tmp_path, "t_test")


Q = Question("What is 1 + 1?", ("1", "2", "3", "4"), "B")
SHOTS = [Question(f" {n} + 0? ", ("0", "1", "2", "3"), "ABCD"[n]) for n in range(4)]


def test_llamafactory_prompts():
    messages = chat_messages(Q, SHOTS[:2], "maths", "en")
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[0]["content"] == (
        "The following are multiple choice questions (with answers) about maths.\n\n"
        " 0 + 0? \nA. 0\nB. 1\nC. 2\nD. 3\nAnswer:"
    )
    assert messages[1]["content"] == "A" and messages[-1]["content"].endswith("D. 4\nAnswer:")
    zh = chat_messages(Q, [], "数学", "zh")[0]["content"]
    assert zh.startswith("以下是中国关于数学考试的单项选择题") and zh.endswith("\n答案：")
    shots = pick_shots(SHOTS, 2, "llamafactory", 42, "maths/0")
    assert shots == pick_shots(SHOTS, 2, "llamafactory", 42, "maths/0")  # fixed by seed + question
    draws = {
        tuple(map(id, pick_shots(SHOTS, 2, "llamafactory", 42, f"maths/{i}"))) for i in range(9)
    }
    assert len(draws) > 1  # but drawn per question


def test_harness_prompts():
    assert pick_shots(SHOTS, 2, "harness", 42, "x") == SHOTS[:2]  # the first k, in order
    assert harness_context(Q, SHOTS[:1], "maths", "en") == (
        "The following are multiple choice questions (with answers) about maths.\n\n"
        "0 + 0?\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer: A\n\n"
        "What is 1 + 1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:"
    )


def test_the_table_has_subjects_categories_and_the_average(tmp_path):
    write_folder(tmp_path)
    task = load_task(tmp_path, "t_test")
    right = {s.key: {str(i): q.answer for i, q in enumerate(s.questions)} for s in task.subjects}
    half = {k: {i: ("A" if int(i) % 2 else a) for i, a in v.items()} for k, v in right.items()}
    counts = tally(task, half)
    assert counts["Average"].total == 16 and list(counts)[-5:] == [
        "STEM", "Social Sciences", "Humanities", "Other", "Average"
    ]  # fmt: skip
    table = format_table(task, {"right": right, "half": half})
    lines = table.splitlines()
    assert lines[0].split() == ["n", "right", "half"]
    assert lines[-1].split()[:3] == ["Average", "16", "100.00"]
    assert "first letter" in table  # subjects by their mapping.json names
