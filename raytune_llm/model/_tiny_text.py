"""Text of the tiny-model kit: the tokenizer's training corpus and the families' chat templates.

Kept apart from tiny.py so that both stay short; no third-party imports.
"""

from __future__ import annotations

import string

# Official Meta-Llama-3-8B-Instruct template (tokenizer_config.json), verbatim.
LLAMA3_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)

# Official Qwen2.5 template (tools included), with the Qwen2 / Qwen2.5 base models' default system
# prompt "You are a helpful assistant." (the -Instruct models say "You are Qwen, created by ...").
QWEN2_CHAT_TEMPLATE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n\
You are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and \
arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \
\\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or \
(message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

CHAT_TEMPLATES: dict[str, str] = {"llama": LLAMA3_CHAT_TEMPLATE, "qwen2": QWEN2_CHAT_TEMPLATE}

# Pre-tokenizer regexes of the real tokenizer.json files: Llama-3 groups digits by up to three,
# Qwen2 splits every digit.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PRETOKENIZE_REGEX: dict[str, str] = {
    "llama": _LLAMA3_SPLIT,
    "qwen2": _LLAMA3_SPLIT.replace(r"\p{N}{1,3}", r"\p{N}"),
}

# The demo tasks' phrases (raytune_llm.data.demo.TASKS and its texts); a test keeps them in step.
TASK_PHRASES: tuple[str, ...] = (
    "Name the first letter",
    "Name the last letter",
    "Count the letters",
    "Uppercase the letters",
    "Reverse the letters",
    "Sort the letters",
)
DEMO_SENTENCES: tuple[str, ...] = (
    "You are a helpful assistant.",
    "Answer with the result only.",
    "You are a careful assistant that solves letter puzzles.",
    "The first letter of c a t is c.",
    "The last letter of c a t is t.",
    "There are 3 letters in c a t.",
    "In capitals, the letters c a t are written C A T.",
    "Reverse the letters c a t and you get t a c.",
    "Sorted in alphabetical order, the letters d c a b become a b c d.",
)

_ENGLISH = """\
The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with one step.
Language models read text as tokens and learn to predict the next token from the ones before it.
When we train a model, we show it many examples, measure how wrong its guesses are, and nudge its
weights so that the next guess is a little better. This is called gradient descent.
Fine-tuning starts from a model that already knows a lot and teaches it a new skill with a small
dataset. Instruction tuning uses pairs of questions and answers; preference tuning uses a chosen and
a rejected answer for the same question, and the model learns to prefer the better one.
Please write a short summary of the following article. What is the capital of France? Paris is the
capital of France, and Berlin is the capital of Germany. The weather today is sunny and warm, with a
light breeze from the west. Tomorrow it will rain in the morning and clear up in the afternoon.
She opened the window, looked at the garden and smiled: the roses were finally in bloom.
He said, "I don't know where they've gone, but we'll find them before it's dark."
Numbers such as 1, 2, 3, 10, 42, 100, 2024 and 3.14159 appear in many documents, together with
dates like 2024-05-17, times like 09:30, prices like $19.99 and percentages like 75%.
Computers store information as bits and bytes. A program is a list of instructions; a function
takes inputs, does some work and returns an output. Errors should never pass silently.
The library, the school, the hospital and the station are all close to the city centre.
Children played in the park while their parents talked about work, family, music and travel.
Good writing is clear, simple and direct. Every sentence should say something useful.
Science asks questions about the natural world and answers them with experiments and evidence.
The river flows north through forests, fields and small villages before it reaches the sea.
We thank you for your help, and we hope to see you again next week at the meeting.
Question: How many legs does a spider have? Answer: A spider has eight legs.
Question: Which planet is closest to the sun? Answer: Mercury is the closest planet to the sun.
First, read the instructions carefully. Second, check your work. Finally, submit the answer.
Example input and expected output are given below; follow the same format in your response.
"""

# Common English words, so that the BPE fills its vocabulary with real word pieces.
_WORDS = """\
ability able about above accept according account across act action activity actually add
address administration admit adult affect after again against age agency agent ago agree
agreement ahead air all allow almost alone along already also although always american among
amount analysis and animal another answer any anyone anything appear apply approach area argue
arm around arrive art article artist as ask assume at attack attention attorney audience author
authority available avoid away baby back bad bag ball bank bar base be beat beautiful because
become bed before begin behavior behind believe benefit best better between beyond big bill
billion bit black blood blue board body book born both box boy break bring brother budget build
building business but buy by call camera campaign can cancer candidate capital car card care
career carry case catch cause cell center central century certain certainly chair challenge
chance change character charge check child choice choose church citizen city civil claim class
clear clearly close coach cold collection college color come commercial common community company
compare computer concern condition conference congress consider consumer contain continue
control cost could country couple course court cover create crime cultural culture cup current
customer cut dark data daughter day dead deal death debate decade decide decision deep defense
degree democrat democratic describe design despite detail determine develop development die
difference different difficult dinner direction director discover discuss discussion disease do
doctor dog door down draw dream drive drop drug during each early east easy eat economic economy
edge education effect effort eight either election else employee end energy enjoy enough enter
entire environment environmental especially establish even evening event ever every everybody
everyone everything evidence exactly example executive exist expect experience expert explain
eye face fact factor fail fall family far fast father fear federal feel feeling few field fight
figure fill film final finally financial find fine finger finish fire firm first fish five floor
fly focus follow food foot for force foreign forget form former forward four free friend from
front full fund future game garden gas general generation get girl give glass go goal good
government great green ground group grow growth guess gun guy hair half hand hang happen happy
hard have he head health hear heart heat heavy help her here herself high him himself his
history hit hold home hope hospital hot hotel hour house how however huge human hundred husband
idea identify if image imagine impact important improve in include including increase indeed
indicate individual industry information inside instead institution interest interesting
international interview into investment involve issue it item its itself job join just keep key
kid kill kind kitchen know knowledge land language large last late later laugh law lawyer lay
lead leader learn least leave left leg legal less let letter level lie life light like likely
line list listen little live local long look lose loss lot love low machine magazine main
maintain major majority make man manage management manager many market marriage material matter
may maybe me mean measure media medical meet meeting member memory mention message method middle
might military million mind minute miss mission model modern moment money month more morning
most mother mouth move movement movie mr mrs much music must my myself name nation national
natural nature near nearly necessary need network never new news newspaper next nice night no
none nor north not note nothing notice now number occur of off offer office officer official
often oh oil ok old on once one only onto open operation opportunity option or order
organization other others our out outside over own owner page pain painting paper parent part
participant particular particularly partner party pass past patient pattern pay peace people per
perform performance perhaps period person personal phone physical pick picture piece place plan
plant play player point police policy political politics poor popular population position
positive possible power practice prepare present president pressure pretty prevent price private
probably problem process produce product production professional professor program project
property protect prove provide public pull purpose push put quality question quickly quite race
radio raise range rate rather reach read ready real reality realize really reason receive recent
recently recognize record red reduce reflect region relate relationship religious remain
remember remove report represent republican require research resource respond response
responsibility rest result return reveal rich right rise risk road rock role room rule run safe
same save say scene school science scientist score sea season seat second section security see
seek seem sell send senior sense series serious serve service set seven several shake share she
shoot short shot should shoulder show side sign significant similar simple simply since sing
single sister sit site situation six size skill skin small smile so social society soldier some
somebody someone something sometimes son song soon sort sound source south southern space speak
special specific speech spend sport spring staff stage stand standard star start state statement
station stay step still stock stop store story strategy street strong structure student study
stuff style subject success successful such suddenly suffer suggest summer support sure surface
system table take talk task tax teach teacher team technology television tell ten tend term test
than thank that the their them themselves then theory there these they thing think third this
those though thought thousand threat three through throughout throw thus time to today together
tonight too top total tough toward town trade traditional training travel treat treatment tree
trial trip trouble true truth try turn tv two type under understand unit until up upon us use
usually value various very victim view violence visit voice vote wait walk wall want war watch
water way we weapon wear week weight well west western what whatever when where whether which
while white who whole whom whose why wide wife will win wind window wish with within without
woman wonder word work worker world worry would write writer wrong yard yeah year yes yet you
young your yourself apple banana orange grape lemon bread butter cheese coffee tea milk sugar
salt pepper rice soup salad monday tuesday wednesday thursday friday saturday sunday january
february march april june july august september october november december morning afternoon
yesterday tomorrow weekend holiday birthday mountain valley forest desert island ocean beach
lake bridge tower castle village farm museum library happily quietly slowly carefully loudly
brightly gently bravely kindly warmly softly clearly running walking jumping swimming reading
writing singing dancing cooking painting thinking talking
"""

_ASCII = """\
def add(a: int, b: int) -> int:
    return a + b

for i in range(10):
    print(f"step {i}: loss={1.0 / (i + 1):.4f}")

{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}
[1, 2, 3] (a, b) <tag> x == y && z != w || !v; a_b-c.d/e\\f ~ ` @ # ^ * = + ? | ;
"""


def _spaced(letters: str) -> str:
    return " ".join(letters)


def corpus() -> list[str]:
    """The deterministic text the tiny tokenizers are trained on (same list every call)."""
    lines = _ENGLISH.splitlines() + _ASCII.splitlines() + list(DEMO_SENTENCES)
    lines.append("\n\n".join(_ENGLISH.splitlines()))  # blank lines, as in chat templates
    lines += ["system", "user", "assistant", "tool", "ipython"] * 8  # role names after specials
    for line in _WORDS.splitlines():
        lines += [line, line.title()]
    lower = string.ascii_lowercase
    for i in range(26):
        word = _spaced((lower[i:] + lower[:i])[: 3 + i % 4])
        for phrase in TASK_PHRASES:
            lines += [f"{phrase}: {word}", f"{phrase}.\n{word}"]
        lines += [_spaced(word.replace(" ", "")[::-1]), word.upper(), f"{i + 1}"]
    for a in range(100):
        lines.append(f"What is {a} plus {a % 10}? The sum is {a + a % 10}.")
    lines.append(" ".join(str(n) for n in range(1000)))
    lines.append(_spaced(lower) + " " + _spaced(lower.upper()) + " " + _spaced(string.digits))
    return lines
