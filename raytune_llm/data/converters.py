"""Turn raw records (alpaca, sharegpt, openai) into canonical examples, as LLaMA-Factory does.

Canonical records are plain dicts whose strings are never None::

    Message      {"role": "user" | "assistant" | "system" | "function" | "observation",
                  "content": str}
    sft, ppo     {"messages": [Message, ...], "system": str, "tools": str}
    rm, dpo, orpo (ranking data)
                 {"prompt": [Message, ...], "chosen": Message, "rejected": Message,
                  "system": str, "tools": str}
    kto          {"prompt": [Message, ...], "completion": Message, "label": bool,
                  "system": str, "tools": str}
    pt           {"text": str}

``messages`` alternates user-side (user, observation) and assistant-side (assistant, function)
turns, starting with the user side and ending with an answer; for stage ppo it may end with the
user turn (LLaMA-Factory's unsupervised examples). A ``prompt`` ends with a user-side turn.
``system`` is "" when the record has none (the template's default applies), ``tools`` is ""
or JSON text.

Where LLaMA-Factory drops a broken example with a warning (turns out of order, a missing
answer), :func:`convert` raises :class:`DataError` naming the file, line or row and the column;
:func:`converter_for` can skip and count such records instead.
"""

from __future__ import annotations

import json
from typing import Any

from ..config import STAGES
from ..config.errors import did_you_mean
from .errors import DataError, Location, json_kind
from .registry import DatasetSpec
from .stages import STAGE_DATA, stages_reading

Message = dict[str, str]
Record = dict[str, Any]
USER_SIDE, ANSWER_SIDE = ("user", "observation"), ("assistant", "function")


def check_stage(spec: DatasetSpec, stage: str) -> None:
    """Check that a dataset suits a stage before any record is read.

    Raises:
        DataError: naming the dataset and the stage and saying what would be valid.
    """
    where, c = f"dataset_info.json '{spec.name}'", spec.columns
    if stage not in STAGES:
        valid = ", ".join(STAGES)
        raise DataError(f"unknown stage '{stage}'{did_you_mean(stage, STAGES)}; valid: {valid}")
    problem = _stage_problem(spec, stage)
    if problem is None and spec.formatting == "alpaca":
        needs = {"text": "prompt", "conversation": "response", "kto": "response"}.get(
            STAGE_DATA[stage].record
        )
        if needs and getattr(c, needs) is None:
            problem = f"stage {stage} reads columns.{needs}, which this entry leaves unset"
    if problem is None and spec.formatting != "alpaca":
        unset = [k for k in ("role_tag", "content_tag") if getattr(spec.tags, k) is None]
        unset += ["columns.messages"] if c.messages is None else []
        problem = f"{spec.formatting} data needs {', '.join(unset)}" if unset else None
    media = [k for k in ("images", "videos", "audios") if getattr(c, k)]
    if problem is None and media:
        problem = f"columns.{media[0]}: multimodal datasets are not supported yet"
    if problem:
        raise DataError(problem, where=where)


def _stage_problem(spec: DatasetSpec, stage: str) -> str | None:
    c = spec.columns
    ranked = _reads(stage, "ranking")
    ranking = ", ".join(stages_reading("ranking"))
    if spec.ranking and not ranked:
        return (
            f"ranking (pairwise) data cannot be used with stage {stage}; it suits stages "
            f"{ranking}: set one of them, or use a dataset without ranking: true"
        )
    if not spec.ranking and ranked:
        return (
            f"stage {stage} needs ranking (pairwise) data: an entry with ranking: true and "
            "chosen/rejected columns; this one is not ranking"
        )
    if spec.ranking and not (c.chosen and c.rejected):
        return "ranking data needs columns.chosen and columns.rejected"
    if _reads(stage, "kto") and not c.kto_tag:
        return "stage kto needs a kto_tag column (true/false feedback); set columns.kto_tag"
    if _reads(stage, "conversation") and c.kto_tag:
        return "this is KTO data (columns.kto_tag): use it with stage kto, not sft"
    if _reads(stage, "text") and spec.formatting != "alpaca":
        return (
            f"stage pt reads alpaca data ({spec.formatting} is not supported for pre-training); "
            "use formatting alpaca with columns: {prompt: <text column>}"
        )
    return None


def _reads(stage: str, record: str) -> bool:
    """Whether ``stage`` reads canonical records of this kind (see ``STAGE_DATA``)."""
    return STAGE_DATA[stage].record == record


def convert(
    record: Record, spec: DatasetSpec, stage: str, *, where: Location | str | None = None
) -> dict[str, Any]:
    """Convert one raw record to the canonical record of ``stage`` (see the module docstring).

    Raises:
        DataError: the dataset does not suit the stage, or the record is malformed (a missing
            column, a wrong type, turns out of order); the message names ``where``.
    """
    check_stage(spec, stage)
    return _convert(record, spec, stage, where)


def _convert(record: Record, spec: DatasetSpec, stage: str, where: Any) -> dict[str, Any]:
    try:
        tools = _tools(record, spec, where)
        if spec.formatting == "alpaca":
            return _from_alpaca(record, spec, stage, where, tools)
        return _from_chat(record, spec, stage, where, tools)
    except (TypeError, KeyError, AttributeError, ValueError) as exc:
        reason = f"cannot convert the record: {type(exc).__name__}: {exc}"
        raise DataError(reason, where=where) from None


# ---- alpaca -------------------------------------------------------------------------------------


def _from_alpaca(record: Record, spec: DatasetSpec, stage: str, where: Any, tools: str) -> Any:
    c = spec.columns
    prompt = _history(record, spec, where)
    parts = [_text(record, c.prompt, "prompt", where, needed=True), _text(record, c.query, "query")]
    prompt.append(_msg("user", "\n".join(p for p in parts if p)))  # LLaMA-Factory: prompt\nquery
    if _reads(stage, "text"):
        return {"text": prompt[0]["content"]}
    system = _text(record, c.system, "system", where) or ""
    if _reads(stage, "ranking"):
        chosen = _text(record, c.chosen, "chosen", where, needed=True, null=False)
        rejected = _text(record, c.rejected, "rejected", where, needed=True, null=False)
        return _pairwise(
            prompt, _msg("assistant", chosen), _msg("assistant", rejected), system, tools
        )
    prompt_only = _reads(stage, "prompt")  # ppo: the answer is generated, not read
    answer = _text(record, c.response, "response", where, needed=not prompt_only, null=prompt_only)
    if _reads(stage, "kto"):
        label = _label(record, spec, where)
        return _kto(prompt, _msg("assistant", answer), label, system, tools)
    messages = [*prompt, _msg("assistant", answer)] if answer is not None else prompt
    return {"messages": messages, "system": system, "tools": tools}


def _history(record: Record, spec: DatasetSpec, where: Any) -> list[Message]:
    column = spec.columns.history
    value = record.get(column) if column else None
    if value is None or value == "":
        return []
    if not isinstance(value, list):
        raise DataError(
            f"column '{column}' (columns.history) must be a list of [prompt, answer] "
            f"pairs, got {json_kind(value)}",
            where=where,
        )
    turns: list[Message] = []
    for i, pair in enumerate(value):
        if not (isinstance(pair, list | tuple) and [type(x) for x in pair] == [str, str]):
            raise DataError(
                f"column '{column}'[{i}] (columns.history) must be a [prompt, answer] "
                f"pair of strings, got {_short(pair)}",
                where=where,
            )
        turns += [_msg("user", pair[0]), _msg("assistant", pair[1])]
    return turns


# ---- sharegpt and openai ------------------------------------------------------------------------


def _from_chat(record: Record, spec: DatasetSpec, stage: str, where: Any, tools: str) -> Any:
    c, t = spec.columns, spec.tags
    turns = _field(record, c.messages, "messages", where)
    if not isinstance(turns, list):
        kind = json_kind(turns)
        raise DataError(
            f"column '{c.messages}' (columns.messages) must be a list of turns, got {kind}",
            where=where,
        )
    labels = [f"'{c.messages}'[{i}]" for i in range(len(turns))]
    system, start = _text(record, c.system, "system", where) or "", 0
    if t.system_tag and turns and _role_of(turns[0], labels[0], spec, where) == t.system_tag:
        system, start = _content_of(turns[0], labels[0], spec, where), 1
    if spec.formatting == "openai":
        messages = _openai_messages(turns, labels, start, spec, where)
    else:
        messages = [
            _sharegpt_message(turns[i], labels[i], spec, where) for i in range(start, len(turns))
        ]
    _check_order(messages, c.messages, start, spec, where)
    if _reads(stage, "ranking"):
        if len(messages) % 2 == 0:
            reason = "ranking data must end with a user-side turn (chosen/rejected are the answers)"
            raise DataError(_ending(reason, messages, c.messages), where=where)
        chosen = _answer(record, c.chosen, "chosen", spec, where)
        rejected = _answer(record, c.rejected, "rejected", spec, where)
        return _pairwise(messages, chosen, rejected, system, tools)
    if not messages or len(messages) % 2:
        reason = "the conversation must end with an assistant-side turn (the answer)"
        raise DataError(_ending(reason, messages, c.messages), where=where)
    if _reads(stage, "kto"):
        return _kto(messages[:-1], messages[-1], _label(record, spec, where), system, tools)
    return {"messages": messages, "system": system, "tools": tools}


def _sharegpt_message(turn: Any, label: str, spec: DatasetSpec, where: Any) -> Message:
    role = _role(_role_of(turn, label, spec, where), label, spec, where)
    return _msg(role, _content_of(turn, label, spec, where))


def _openai_messages(
    turns: list[Any], labels: list[str], start: int, spec: DatasetSpec, where: Any
) -> list[Message]:
    """OpenAI turns: tool_calls become a function turn (a JSON list of the calls' ``function``)
    and consecutive tool results merge into one observation, as LLaMA-Factory does."""
    t, messages, results = spec.tags, [], []
    for turn, label in zip(turns[start:], labels[start:], strict=True):
        tag = _role_of(turn, label, spec, where)
        calls = turn.get("tool_calls") if tag in (t.assistant_tag, t.function_tag) else None
        if calls:
            if not isinstance(calls, list) or not all(isinstance(x, dict) for x in calls):
                reason = f"{label}.tool_calls must be a list of objects with a 'function'"
                raise DataError(reason, where=where)
            functions = [x.get("function") for x in calls]
            tag, content = t.function_tag, json.dumps(functions, ensure_ascii=False)
        else:
            content = _content_of(turn, label, spec, where)
        if tag == t.observation_tag:
            results.append(content)
            continue
        if results:
            messages.append(_msg("observation", _TOOL_RESULTS_JOIN.join(results)))
            results = []
        messages.append(_msg(_role(tag, label, spec, where), content))
    if results:
        messages.append(_msg("observation", _TOOL_RESULTS_JOIN.join(results)))
    return messages


_TOOL_RESULTS_JOIN = "\n</tool_response>\n<tool_response>\n"


def _role_of(turn: Any, label: str, spec: DatasetSpec, where: Any) -> Any:
    tag = spec.tags.role_tag
    if not isinstance(turn, dict) or tag not in turn:
        reason = f"{label} must be an object with a '{tag}' key (tags.role_tag), got {_short(turn)}"
        raise DataError(reason, where=where)
    return turn[tag]


def _content_of(turn: dict[str, Any], label: str, spec: DatasetSpec, where: Any) -> str:
    tag = spec.tags.content_tag
    value = turn.get(tag)
    if not isinstance(value, str):
        got = "no such key" if tag not in turn else json_kind(value)
        reason = f"{label}.{tag} (tags.content_tag) must be a string, got {got}"
        raise DataError(reason, where=where)
    return value


def _role(tag: Any, label: str, spec: DatasetSpec, where: Any) -> str:
    t = spec.tags
    roles = {t.user_tag: "user", t.assistant_tag: "assistant", t.observation_tag: "observation"}
    roles |= {t.function_tag: "function", t.system_tag: "system"}
    roles.pop(None, None)
    if tag not in roles:
        valid = ", ".join(f"{k} ({v})" for k, v in roles.items())
        hint = did_you_mean(str(tag), roles)
        raise DataError(f"{label} has role {tag!r}{hint}; valid (tags): {valid}", where=where)
    return roles[tag]


def _check_order(
    messages: list[Message], column: Any, start: int, spec: DatasetSpec, where: Any
) -> None:
    t = spec.tags
    for i, message in enumerate(messages):
        user_side = i % 2 == 0
        if message["role"] in (USER_SIDE if user_side else ANSWER_SIDE):
            continue
        tags = (t.user_tag, t.observation_tag) if user_side else (t.assistant_tag, t.function_tag)
        expected = " or ".join(str(x) for x in tags if x)
        raise DataError(
            f"'{column}' turn {i + 1 + start} is a {message['role']} turn where {expected} was "
            "expected: turns must alternate user-side and assistant-side, starting with the "
            "user (only a first turn may be the system prompt)",
            where=where,
        )


def _answer(record: Record, column: Any, key: str, spec: DatasetSpec, where: Any) -> Message:
    t, turn = spec.tags, _field(record, column, key, where)
    label = f"column '{column}' (columns.{key})"
    tag = _role_of(turn, label, spec, where)
    if tag is None or tag not in (t.assistant_tag, t.function_tag):
        expected = " or ".join(str(x) for x in (t.assistant_tag, t.function_tag) if x)
        raise DataError(f"{label} must be an answer turn ({expected}), got {tag!r}", where=where)
    return _msg(_role(tag, label, spec, where), _content_of(turn, label, spec, where))


def _ending(reason: str, messages: list[Message], column: Any) -> str:
    last = f", ending with a {messages[-1]['role']} turn" if messages else ""
    return f"'{column}': {reason}; got {len(messages)} turns{last}"


# ---- shared -------------------------------------------------------------------------------------


def _field(record: Record, column: str | None, key: str, where: Any) -> Any:
    if column not in record:
        has = ", ".join(map(str, record)) or "no columns"
        raise DataError(f"no column '{column}' (columns.{key}); the record has: {has}", where=where)
    return record[column]


def _text(
    record: Record,
    column: str | None,
    key: str,
    where: Any = None,
    *,
    needed: bool = False,
    null: bool = True,
) -> Any:
    if column is None:
        return None
    value = _field(record, column, key, where) if needed else record.get(column)
    if value is None and null:
        return None
    if not isinstance(value, str):
        raise DataError(
            f"column '{column}' (columns.{key}) must be a string, got {json_kind(value)}",
            where=where,
        )
    return value


def _tools(record: Record, spec: DatasetSpec, where: Any) -> str:
    column = spec.columns.tools
    value = record.get(column) if column else None
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    raise DataError(
        f"column '{column}' (columns.tools) must be JSON text, a list or an object, "
        f"got {json_kind(value)}",
        where=where,
    )


def _label(record: Record, spec: DatasetSpec, where: Any) -> bool:
    column = spec.columns.kto_tag
    value = _field(record, column, "kto_tag", where)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"  # CSV cells
    if not isinstance(value, bool):
        raise DataError(
            f"column '{column}' (columns.kto_tag) must be true or false, got {_short(value)}",
            where=where,
        )
    return value


def _msg(role: str, content: str) -> Message:
    return {"role": role, "content": content}


def _pairwise(prompt: list[Message], chosen: Message, rejected: Message, system: str, tools: str):
    return {
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "system": system,
        "tools": tools,
    }


def _kto(prompt: list[Message], completion: Message, label: bool, system: str, tools: str):
    return {
        "prompt": prompt,
        "completion": completion,
        "label": label,
        "system": system,
        "tools": tools,
    }


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
