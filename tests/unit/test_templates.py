# ruff: noqa: E501  (the official Llama 3.1 chat template below is kept verbatim)
"""Chat templates: literal formats, token equality with official Jinja templates, inference, tools."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from transformers import AutoTokenizer

from raytune_llm.data.templates import (
    TEMPLATE_NAMES,
    TEMPLATES,
    JinjaTemplate,
    SlotTemplate,
    get_template,
)
from raytune_llm.utils.errors import UserError

SYSTEM = "Answer with the result only."
U1, A1, U2, A2 = "Count the letters: a b", "2", "Reverse the letters: c a t", "t a c"
MESSAGES = [
    {"role": "user", "content": U1},
    {"role": "assistant", "content": A1},
    {"role": "user", "content": U2},
]
CHATML = (
    f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{U1}<|im_end|>\n"
    f"<|im_start|>assistant\n{A1}<|im_end|>\n<|im_start|>user\n{U2}<|im_end|>\n<|im_start|>assistant\n"
)
DEEPSEEK3 = f"<｜begin▁of▁sentence｜>{SYSTEM}<｜User｜>{U1}<｜Assistant｜>{A1}<｜end▁of▁sentence｜><｜User｜>{U2}<｜Assistant｜>"
GEMMA = (
    f"<bos><start_of_turn>user\n{SYSTEM}\n\n{U1}<end_of_turn>\n<start_of_turn>model\n{A1}<end_of_turn>\n"
    f"<start_of_turn>user\n{U2}<end_of_turn>\n<start_of_turn>model\n"
)
# System + two user turns + generation prompt, written by hand from each family's official format
# (llama2 and vicuna with LLaMA-Factory's spacing, made for sentencepiece: see llama.py).
EXPECTED = {
    "default": f"System: {SYSTEM}</s>\nHuman: {U1}</s>\nAssistant:{A1}</s>\nHuman: {U2}</s>\nAssistant:",
    "empty": f"{SYSTEM}{U1}{A1}{U2}",
    "fewshot": f"{SYSTEM}{U1}{A1}\n\n{U2}",
    "alpaca": f"{SYSTEM}### Instruction:\n{U1}\n\n### Response:\n{A1}</s>\n\n### Instruction:\n{U2}\n\n### Response:\n",
    "vicuna": f"{SYSTEM}USER: {U1} ASSISTANT:{A1}</s>USER: {U2} ASSISTANT:",
    "chatml": CHATML,
    "llama2": f"<s>[INST] <<SYS>>\n{SYSTEM}\n<</SYS>>\n\n{U1} [/INST]{A1}</s><s>[INST] {U2} [/INST]",
    "llama3": (
        f"<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{SYSTEM}<|eot_id|>"
        f"<|start_header_id|>user<|end_header_id|>\n\n{U1}<|eot_id|>"
        f"<|start_header_id|>assistant<|end_header_id|>\n\n{A1}<|eot_id|>"
        f"<|start_header_id|>user<|end_header_id|>\n\n{U2}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    "qwen": CHATML,
    "qwen3": CHATML,
    "qwen3_nothink": CHATML,
    "mistral": f"<s>[INST] {SYSTEM}\n\n{U1}[/INST] {A1}</s>[INST] {U2}[/INST]",
    "gemma": GEMMA,
    "gemma2": GEMMA,
    "phi": f"<|system|>\n{SYSTEM}<|end|>\n<|user|>\n{U1}<|end|>\n<|assistant|>\n{A1}<|end|>\n<|user|>\n{U2}<|end|>\n<|assistant|>\n",
    "phi4": (
        f"<|im_start|>system<|im_sep|>{SYSTEM}<|im_end|><|im_start|>user<|im_sep|>{U1}<|im_end|>"
        f"<|im_start|>assistant<|im_sep|>{A1}<|im_end|><|im_start|>user<|im_sep|>{U2}<|im_end|>"
        "<|im_start|>assistant<|im_sep|>"
    ),
    "deepseek": f"<｜begin▁of▁sentence｜>{SYSTEM}\n\nUser: {U1}\n\nAssistant: {A1}<｜end▁of▁sentence｜>User: {U2}\n\nAssistant:",
    "deepseek3": DEEPSEEK3,
    "deepseekr1": DEEPSEEK3,
}

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "count_letters",
            "description": "Count the letters of a word",
            "parameters": {
                "type": "object",
                "properties": {"word": {"type": "string", "description": "The word"}},
                "required": ["word"],
            },
        },
    }
]
TOOL_CALL = {"name": "count_letters", "arguments": {"word": "cat"}}
TOOL_RESULT = {"count": 3}
TOOL_MESSAGES = [
    {"role": "user", "content": "How many letters has cat?"},
    {"role": "function", "content": json.dumps(TOOL_CALL)},
    {"role": "observation", "content": json.dumps(TOOL_RESULT)},
    {"role": "assistant", "content": "3"},
]


def _hf_tool_messages(result):
    """TOOL_MESSAGES in transformers' chat format (Llama 3.1 wants the result as a mapping: it
    writes a string result as a quoted JSON string)."""
    return [
        {"role": "user", "content": "How many letters has cat?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"type": "function", "function": TOOL_CALL}],
        },
        {"role": "tool", "content": result},
        {"role": "assistant", "content": "3"},
    ]


# Official Llama 3.1 / 3.3 Instruct chat template (tokenizer_config.json), verbatim.
LLAMA31_CHAT_TEMPLATE = r"""{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\n\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""


@pytest.fixture(scope="module")
def llama_tok(tiny_llama_dir):
    return AutoTokenizer.from_pretrained(tiny_llama_dir)


@pytest.fixture(scope="module")
def qwen_tok(tiny_qwen2_dir):
    return AutoTokenizer.from_pretrained(tiny_qwen2_dir)


@pytest.fixture(scope="module")
def demo_conversations():
    """The demo ShareGPT conversations as canonical messages, with a system prompt on some."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "data" / "demo_sharegpt.json"
    roles = {"human": "user", "gpt": "assistant"}
    out = []
    for i, row in enumerate(json.loads(path.read_text())[:12]):
        messages = [{"role": roles[m["from"]], "content": m["value"]} for m in row["conversations"]]
        out.append((messages, row.get("system") or (SYSTEM if i % 2 else "")))
    return out


def _flat(pairs):
    return [i for prompt, answer in pairs for i in prompt + answer]


def _hf(messages, system):
    return ([{"role": "system", "content": system}] if system else []) + list(messages)


def test_every_template_has_a_literal_expectation():
    assert set(EXPECTED) == set(TEMPLATE_NAMES) == set(TEMPLATES)
    assert tuple(sorted(TEMPLATE_NAMES)) == TEMPLATE_NAMES


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_render_matches_the_official_format(name):
    assert TEMPLATES[name].render(MESSAGES, SYSTEM, add_generation_prompt=True) == EXPECTED[name]


def test_render_without_generation_prompt_and_default_systems():
    llama3 = TEMPLATES["llama3"]
    text = llama3.render(MESSAGES, add_generation_prompt=False)
    assert text.endswith(f"{U2}<|eot_id|>") and "system" not in text
    qwen = TEMPLATES["qwen"].render(MESSAGES[:1], add_generation_prompt=True)
    assert qwen.startswith(
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    )
    alpaca = TEMPLATES["alpaca"].render(MESSAGES[:1], add_generation_prompt=True)
    assert alpaca.startswith("Below is an instruction that describes a task.")


@pytest.mark.parametrize(("tok", "name"), [("llama_tok", "llama3"), ("qwen_tok", "qwen")])
def test_tokens_equal_the_official_jinja(request, demo_conversations, tok, name):
    tokenizer = request.getfixturevalue(tok)
    # Qwen's template name defaults to the Qwen2.5-Instruct system prompt; the tiny tokenizer
    # carries the Qwen2 / Qwen2.5 base one.
    default_system = "You are a helpful assistant." if name == "qwen" else None
    template = get_template(name, tokenizer, default_system=default_system)
    for messages, system in demo_conversations:
        hf = _hf(messages, system)
        expected = tokenizer.apply_chat_template(hf, tokenize=True)["input_ids"]
        pairs = template.encode_multiturn(tokenizer, messages, system)
        assert _flat(pairs) == expected
        assert len(pairs) == len(messages) // 2
        prompt = template.encode_prompt(tokenizer, messages[:-1], system)
        gen = tokenizer.apply_chat_template(hf[:-1], tokenize=True, add_generation_prompt=True)
        assert prompt == gen["input_ids"]
        assert template.render(messages, system, tokenizer=tokenizer) == tokenizer.decode(expected)


def test_turn_boundaries_of_llama3(llama_tok):
    template = TEMPLATES["llama3"]
    pairs = template.encode_multiturn(llama_tok, [*MESSAGES, {"role": "assistant", "content": A2}])
    (p1, a1), (p2, a2) = pairs
    assert p1[0] == llama_tok.bos_token_id == 2037
    assert llama_tok.decode(a1) == f"{A1}<|eot_id|>" and a1[-1] == 2046
    assert llama_tok.decode(p2) == (
        f"<|start_header_id|>user<|end_header_id|>\n\n{U2}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert llama_tok.decode(a2) == f"{A2}<|eot_id|>"


def test_qwen_default_system_is_the_families_unless_set(qwen_tok):
    default = get_template("qwen", qwen_tok)
    ids = default.encode_prompt(qwen_tok, MESSAGES[:1])
    assert "You are Qwen, created by Alibaba Cloud." in qwen_tok.decode(ids)
    custom = get_template("qwen", qwen_tok, default_system="Be brief.")
    assert "Be brief." in qwen_tok.decode(custom.encode_prompt(qwen_tok, MESSAGES[:1]))
    assert TEMPLATES["qwen"].default_system.startswith("You are Qwen")  # registry untouched


def test_get_template_infers_the_family(llama_tok, qwen_tok):
    llama = get_template(None, llama_tok)
    assert isinstance(llama, SlotTemplate) and llama.name == "llama3"
    assert llama.default_system == ""
    qwen = get_template(None, qwen_tok)
    assert qwen.name == "qwen" and qwen.default_system == "You are a helpful assistant."
    messages = [*MESSAGES, {"role": "assistant", "content": A2}]
    expected = qwen_tok.apply_chat_template(messages, tokenize=True)["input_ids"]
    assert _flat(qwen.encode_multiturn(qwen_tok, messages)) == expected


def test_unknown_chat_template_is_wrapped(tiny_llama_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    tokenizer.chat_template = (
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}[SYS]{{ m['content'] }}"
        "{% elif m['role'] == 'user' %}Q: {{ m['content'] }}\n{% else %}A: {{ m['content'] }}"
        "{{ eos_token }}\n{% endif %}{% endfor %}{% if add_generation_prompt %}A:{% endif %}"
    )
    template = get_template(None, tokenizer)
    assert isinstance(template, JinjaTemplate)
    messages = [*MESSAGES, {"role": "assistant", "content": A2}]
    hf = _hf(messages, SYSTEM)
    pairs = template.encode_multiturn(tokenizer, messages, SYSTEM)
    assert _flat(pairs) == tokenizer.apply_chat_template(hf, tokenize=True)["input_ids"]
    assert tokenizer.decode(pairs[1][0]) == f"Q: {U2}\nA:"
    assert tokenizer.decode(pairs[1][1]) == f" {A2}<|eot_id|>\n"
    prompt = tokenizer.apply_chat_template(hf[:-1], tokenize=True, add_generation_prompt=True)
    assert template.encode_prompt(tokenizer, messages[:-1], SYSTEM) == prompt["input_ids"]
    with pytest.raises(UserError, match="no tool format"):
        template.encode_prompt(tokenizer, MESSAGES, tools=json.dumps(TOOLS))

    tokenizer.chat_template = (  # shows only the last answer: turns cannot be split
        "{% for m in messages %}{% if m['role'] == 'user' %}Q: {{ m['content'] }}\n"
        "{% elif loop.last %}A: {{ m['content'] }}\n{% endif %}{% endfor %}"
    )
    template = get_template(None, tokenizer)
    assert isinstance(template, JinjaTemplate)
    with pytest.raises(UserError, match="set `template`"):
        template.encode_multiturn(tokenizer, messages)

    tokenizer.chat_template = None
    assert get_template(None, tokenizer).name == "empty"


def test_unknown_template_name_suggests_the_closest(llama_tok):
    with pytest.raises(UserError) as err:
        get_template("llama-3", llama_tok)
    assert "did you mean 'llama3'" in str(err.value) and "qwen3" in str(err.value)
    with pytest.raises(UserError, match="tool_format"):
        get_template("qwen", llama_tok, tool_format="hermes")


def test_qwen_tools_equal_the_official_jinja(qwen_tok):
    template = get_template(None, qwen_tok)
    pairs = template.encode_multiturn(qwen_tok, TOOL_MESSAGES, "", json.dumps(TOOLS))
    hf = _hf_tool_messages(json.dumps(TOOL_RESULT))
    expected = qwen_tok.apply_chat_template(hf, tools=TOOLS, tokenize=True)
    assert _flat(pairs) == expected["input_ids"]
    assert qwen_tok.decode(pairs[0][1]) == (
        '<tool_call>\n{"name": "count_letters", "arguments": {"word": "cat"}}\n</tool_call><|im_end|>\n'
    )
    assert qwen_tok.decode(pairs[1][0]) == (
        '<|im_start|>user\n<tool_response>\n{"count": 3}\n</tool_response><|im_end|>\n'
        "<|im_start|>assistant\n"
    )


def test_llama3_tools_equal_the_official_llama31_jinja(tiny_llama_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    tokenizer.chat_template = LLAMA31_CHAT_TEMPLATE
    kwargs = {"tools_in_user_message": False, "date_string": "26 Jul 2024"}
    hf = _hf(_hf_tool_messages(TOOL_RESULT), SYSTEM)
    expected = tokenizer.apply_chat_template(hf, tools=TOOLS, tokenize=True, **kwargs)
    template = TEMPLATES["llama3"]
    pairs = template.encode_multiturn(tokenizer, TOOL_MESSAGES, SYSTEM, json.dumps(TOOLS))
    assert _flat(pairs) == expected["input_ids"]
    assert tokenizer.decode(pairs[0][1]) == (
        '{"name": "count_letters", "parameters": {"word": "cat"}}<|eot_id|>'
    )
    assert tokenizer.decode(pairs[1][0]).startswith("<|start_header_id|>ipython<|end_header_id|>")
    hf_prompt = hf[:2]
    gen = tokenizer.apply_chat_template(
        hf_prompt, tools=TOOLS, tokenize=True, add_generation_prompt=True, **kwargs
    )
    ids = template.encode_prompt(tokenizer, TOOL_MESSAGES[:1], SYSTEM, json.dumps(TOOLS))
    assert ids == gen["input_ids"]


def test_mistral_tools_render_in_v03_format():
    text = TEMPLATES["mistral"].render(TOOL_MESSAGES, SYSTEM, json.dumps(TOOLS))
    assert text == (
        f"<s>[AVAILABLE_TOOLS] {json.dumps(TOOLS)}[/AVAILABLE_TOOLS]"
        f"[INST] {SYSTEM}\n\nHow many letters has cat?[/INST]"
        f"[TOOL_CALLS] {json.dumps([TOOL_CALL])}</s>"
        f'[TOOL_RESULTS] {{"content": {json.dumps(TOOL_RESULT)}}}[/TOOL_RESULTS] 3</s>'
    )


def test_default_tool_format_for_families_without_one():
    text = TEMPLATES["chatml"].render(TOOL_MESSAGES, "", json.dumps(TOOLS))
    assert "> Tool Name: count_letters\nTool Description: Count the letters of a word\n" in text
    assert "  - word (string, required): The word\n" in text
    assert 'Action: count_letters\nAction Input: {"word": "cat"}<|im_end|>' in text
    assert f"<|im_start|>tool\n{json.dumps(TOOL_RESULT)}<|im_end|>\n<|im_start|>assistant\n" in text
    with pytest.raises(UserError, match="not valid JSON"):
        TEMPLATES["chatml"].render(MESSAGES, tools="{not json")


def test_tool_calls_are_extracted_back():
    from raytune_llm.data.templates.tools import TOOL_FORMATS, parse_calls

    calls = parse_calls(json.dumps(TOOL_CALL))
    for fmt in TOOL_FORMATS.values():
        assert fmt.extract_calls(fmt.format_calls(calls)) == calls
        assert fmt.extract_calls("just text") == "just text"
    # OpenAI-style calls whose arguments are JSON text are accepted as well.
    openai_style = json.dumps([{"name": "count_letters", "arguments": '{"word": "cat"}'}])
    assert parse_calls(openai_style) == calls


def test_qwen3_thinking(qwen_tok):
    think = "<think>\n\n</think>\n\n"
    thought = "<think>\ncount them\n</think>\n\n"
    conversation = [
        {"role": "user", "content": U1},
        {"role": "assistant", "content": thought + A1},
        {"role": "user", "content": U2},
        {"role": "assistant", "content": A2},
    ]

    def decoded(template, **kwargs):
        pairs = template.encode_multiturn(qwen_tok, conversation, **kwargs)
        return [(qwen_tok.decode(p), qwen_tok.decode(a)) for p, a in pairs]

    on = decoded(get_template("qwen3", qwen_tok))
    assert on[0][1] == f"{thought}{A1}<|im_end|>\n" and on[1][1] == f"{think}{A2}<|im_end|>\n"
    off = decoded(get_template("qwen3", qwen_tok, enable_thinking=False))
    assert off[0][1] == f"{A1}<|im_end|>\n" and off[1][0].endswith(f"assistant\n{think}")
    dropped = decoded(get_template("qwen3", qwen_tok), drop_history_thinking=True)
    assert dropped[0][1] == f"{A1}<|im_end|>\n" and dropped[1][1] == f"{think}{A2}<|im_end|>\n"
    # Generation: history thoughts removed; thinking off ends the prompt with an empty thought.
    prompt = qwen_tok.decode(
        get_template("qwen3", qwen_tok).encode_prompt(qwen_tok, conversation[:3])
    )
    assert "count them" not in prompt and prompt.endswith("<|im_start|>assistant\n")
    nothink = get_template("qwen3", qwen_tok, enable_thinking=False)
    assert qwen_tok.decode(nothink.encode_prompt(qwen_tok, conversation[:3])).endswith(think)
    kept = get_template("qwen3", qwen_tok, preserve_thinking=True)
    assert "count them" in qwen_tok.decode(kept.encode_prompt(qwen_tok, conversation[:3]))


def test_stop_tokens_and_fix_tokenizer(tiny_llama_dir, llama_tok):
    assert TEMPLATES["llama3"].stop_token_ids(llama_tok) == [2046, 2045]
    assert TEMPLATES["llama3"].fix_tokenizer(AutoTokenizer.from_pretrained(tiny_llama_dir)) == 0
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    size = len(tokenizer)
    added = TEMPLATES["chatml"].fix_tokenizer(tokenizer)  # replace_eos with a new token
    assert added == 2 and len(tokenizer) == size + 2
    assert tokenizer.eos_token == "<|im_end|>"
    assert TEMPLATES["chatml"].stop_token_ids(tokenizer) == [size, size + 1]


def test_messages_out_of_order_are_rejected(llama_tok):
    template = TEMPLATES["llama3"]
    with pytest.raises(UserError, match="message 1 has role 'user'"):
        template.encode_multiturn(llama_tok, [MESSAGES[0], MESSAGES[0]])
    with pytest.raises(UserError, match="ends with a user message"):
        template.encode_multiturn(llama_tok, MESSAGES)
    with pytest.raises(UserError, match="needs at least one"):
        template.encode_prompt(llama_tok, [])


def test_package_imports_without_torch():
    code = (
        "import sys, raytune_llm.data.templates, raytune_llm.data.tokenize; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
