"""Tool formats: how tool definitions, tool calls and their parsing look in each model family.

A record's ``tools`` is a JSON list of function definitions (OpenAI style, ``{"type": "function",
"function": {...}}``, or the bare ``{...}``); a ``function`` message's content is the JSON of one
call ``{"name": ..., "arguments": {...}}`` or a list of them. The names match LLaMA-Factory's
``tool_format`` values.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from typing import Any

from raytune_llm.utils.errors import UserError

# The date the official Llama 3.1 chat template prints when none is given; a fixed date keeps the
# tokenised data deterministic (LLaMA-Factory prints today's date).
LLAMA3_DATE = "26 Jul 2024"

_DEFAULT_PROMPT = (
    "You have access to the following tools:\n{tool_text}"
    "Use the following format if using a tool:\n```\n"
    "Action: tool name (one of [{tool_names}])\n"
    "Action Input: the input to the tool, in a JSON format representing the kwargs "
    '(e.g. ```{{"input": "hello world", "num_beams": 5}}```)\n```\n'
)
_QWEN_PROMPT = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>{tool_text}"
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments "
    "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)
# Llama 3.1's official system header with tools (tools_in_user_message=False), verbatim.
_LLAMA3_PROMPT = (
    "Environment: ipython\nCutting Knowledge Date: December 2023\nToday Date: {date}\n\n"
    "You have access to the following functions. To call a function, please respond with JSON for "
    'a function call.Respond in the format {{"name": function name, "parameters": dictionary of '
    "argument name and its value}}.Do not use variables.\n\n{tool_text}"
)

Call = tuple[str, str]  # (function name, arguments as JSON text)


def _dumps(value: Any, **kwargs: Any) -> str:
    return json.dumps(value, ensure_ascii=False, **kwargs)


def parse_tools(tools: str) -> list[dict[str, Any]]:
    """Parse a record's ``tools`` JSON into a list of definitions ([] for "" or "[]")."""
    if not tools or not tools.strip():
        return []
    try:
        parsed = json.loads(tools)
    except json.JSONDecodeError as err:
        raise UserError(f"tools is not valid JSON ({err}): {tools[:200]!r}") from None
    parsed = [parsed] if isinstance(parsed, dict) else parsed
    if not isinstance(parsed, list) or not all(isinstance(t, dict) for t in parsed):
        raise UserError(f"tools must be a JSON list of function definitions, got {tools[:200]!r}")
    return parsed


def parse_calls(content: str) -> list[Call]:
    """Parse a ``function`` message (one call or a list) into (name, arguments-JSON) pairs."""
    try:
        parsed = json.loads(content)
    except json.JSONDecodeError:
        raise UserError(f"a function message is not valid JSON: {content[:200]!r}") from None
    calls = []
    for call in parsed if isinstance(parsed, list) else [parsed]:
        if not isinstance(call, dict) or "name" not in call:
            raise UserError(f"a tool call needs a name and arguments, got {call!r}")
        arguments = call.get("arguments", {})
        if isinstance(arguments, str):  # OpenAI style: arguments already JSON text
            with contextlib.suppress(json.JSONDecodeError):
                arguments = json.loads(arguments)
        calls.append((call["name"], _dumps(arguments)))
    return calls


def _bare(tool: dict[str, Any]) -> dict[str, Any]:
    return tool.get("function", tool) if tool.get("type") == "function" else tool


def _wrapped(tool: dict[str, Any]) -> dict[str, Any]:
    return tool if tool.get("type") == "function" else {"type": "function", "function": tool}


@dataclass(frozen=True)
class ToolFormat:
    """LLaMA-Factory's "default" tool format (ReAct-style ``Action:`` / ``Action Input:``).

    Attributes:
        name: The ``tool_format`` name.
        tools_first: Put the tool text before the system prompt (else after it).
        before_turns: Emit the tool text as its own piece before the first turn instead of inside
            the system slot (Mistral's ``[AVAILABLE_TOOLS]``).
    """

    name: str = "default"
    tools_first: bool = False
    before_turns: bool = False

    def describe(self, tools: list[dict[str, Any]]) -> str:
        """The text that tells the model which tools exist."""
        text, names = "", []
        for tool in map(_bare, tools):
            params = tool.get("parameters", {}) or {}
            required = params.get("required", [])
            lines = ""
            for pname, spec in params.get("properties", {}).items():
                extra = ", required" if pname in required else ""
                enum = f", should be one of [{', '.join(spec['enum'])}]" if spec.get("enum") else ""
                items = spec.get("items")
                each = f", where each item should be {items.get('type', '')}" if items else ""
                lines += (
                    f"  - {pname} ({spec.get('type', '')}{extra}): "
                    f"{spec.get('description', '')}{enum}{each}\n"
                )
            text += (
                f"> Tool Name: {tool['name']}\nTool Description: {tool.get('description', '')}\n"
                f"Tool Args:\n{lines}\n"
            )
            names.append(tool["name"])
        return _DEFAULT_PROMPT.format(tool_text=text, tool_names=", ".join(names))

    def format_calls(self, calls: list[Call]) -> str:
        """The text of an assistant turn that calls tools."""
        return "\n".join(f"Action: {name}\nAction Input: {args}" for name, args in calls)

    def extract_calls(self, text: str) -> list[Call] | str:
        """Parse the calls out of generated text; return the text itself when it holds none."""
        found = re.findall(
            r"Action:\s*([a-zA-Z0-9_]+)\s*Action Input:\s*(.+?)(?=\s*Action:|\s*$)", text, re.DOTALL
        )
        calls = []
        for name, raw in found:
            try:
                calls.append((name.strip(), _dumps(json.loads(raw.strip().strip('"').strip("`")))))
            except json.JSONDecodeError:
                return text
        return calls or text

    def join_system(self, system: str, tool_text: str) -> str:
        """System slot content when tools are present."""
        return tool_text + system if self.tools_first else system + tool_text


class QwenToolFormat(ToolFormat):
    """Qwen2.5 / Qwen3: JSON definitions inside <tools>, calls inside <tool_call> tags."""

    def describe(self, tools: list[dict[str, Any]]) -> str:
        return _QWEN_PROMPT.format(tool_text="".join("\n" + _dumps(_wrapped(t)) for t in tools))

    def format_calls(self, calls: list[Call]) -> str:
        return "\n".join(
            f"<tool_call>\n{_dumps({'name': n, 'arguments': json.loads(a)})}\n</tool_call>"
            for n, a in calls
        )

    def extract_calls(self, text: str) -> list[Call] | str:
        found = re.findall(r"<tool_call>(.+?)</tool_call>(?=\s*<tool_call>|\s*$)", text, re.DOTALL)
        return _json_calls(found, "arguments") or text


class Llama3ToolFormat(ToolFormat):
    """Llama 3.1+: tools as indented JSON in the system header, a call as one JSON object."""

    def describe(self, tools: list[dict[str, Any]]) -> str:
        text = "".join(_dumps(_wrapped(t), indent=4) + "\n\n" for t in tools)
        return _LLAMA3_PROMPT.format(date=LLAMA3_DATE, tool_text=text)

    def format_calls(self, calls: list[Call]) -> str:
        objs = [{"name": n, "parameters": json.loads(a)} for n, a in calls]
        return _dumps(objs[0] if len(objs) == 1 else objs)

    def extract_calls(self, text: str) -> list[Call] | str:
        return _json_calls([text], "parameters") or text


class MistralToolFormat(ToolFormat):
    """Mistral v0.3: [AVAILABLE_TOOLS] before the turns, calls as a JSON list after [TOOL_CALLS]."""

    def describe(self, tools: list[dict[str, Any]]) -> str:
        return f"[AVAILABLE_TOOLS] {_dumps([_wrapped(t) for t in tools])}[/AVAILABLE_TOOLS]"

    def format_calls(self, calls: list[Call]) -> str:
        return _dumps([{"name": n, "arguments": json.loads(a)} for n, a in calls])

    def extract_calls(self, text: str) -> list[Call] | str:
        return _json_calls([text.replace("[TOOL_CALLS]", "")], "arguments") or text


def _json_calls(chunks: list[str], key: str) -> list[Call]:
    """Calls from JSON chunks (each one object or a list); [] when any chunk is not a call."""
    calls = []
    for chunk in chunks:
        try:
            parsed = json.loads(chunk.strip())
        except json.JSONDecodeError:
            return []
        for call in parsed if isinstance(parsed, list) else [parsed]:
            if not isinstance(call, dict) or "name" not in call or key not in call:
                return []
            calls.append((call["name"], _dumps(call[key])))
    return calls


TOOL_FORMATS: dict[str, ToolFormat] = {
    "default": ToolFormat(),
    "qwen": QwenToolFormat("qwen"),
    "llama3": Llama3ToolFormat("llama3", tools_first=True),
    "mistral": MistralToolFormat("mistral", before_turns=True),
}


def get_tool_format(name: str) -> ToolFormat:
    """Look up a tool format by its ``tool_format`` name."""
    from raytune_llm.config.errors import did_you_mean

    if name not in TOOL_FORMATS:
        raise UserError(
            f"tool_format: unknown tool format {name!r}{did_you_mean(name, TOOL_FORMATS)}; "
            f"valid: {', '.join(sorted(TOOL_FORMATS))}"
        )
    return TOOL_FORMATS[name]
