"""Teacher backends for target generation: local transformers, any OpenAI-compatible server, vLLM.

Each backend turns chat conversations (:class:`~blsp_emo.model.types.Conversation`) into greedy
continuations through the teacher's own chat template, as :class:`~blsp_emo.model.types.Reply` objects whose
``finish_reason`` is ``"length"`` when the token cap was hit (:func:`truncated`). ``sample`` draws N
candidates per conversation instead (best-of-N targets); a batch's random state is seeded from the run's
seed and the batch's conversations, so the same work gives the same samples. Both take the decoding as
:class:`~blsp_emo.model.types.DecodingOptions`: length cap, seed and (sampling) temperature and top-p;
penalties, n-gram blocks and stop strings are not teacher decodings and are refused.
"""

from __future__ import annotations

import copy
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from blsp_emo.errors import UserError
from blsp_emo.model.types import Conversation, DecodingOptions, Message, Reply
from blsp_emo.openai_client import ChatClient


def teacher_reply(text: str, hit_cap: bool, completion_tokens: int) -> Reply:
    """A teacher continuation: ``text`` (special tokens removed, stripped), whether it hit the token cap
    before the end-of-turn token, and its generated tokens (end-of-turn included when present)."""
    return Reply(text, completion_tokens=completion_tokens, finish_reason="length" if hit_cap else "stop")


def truncated(reply: Reply) -> bool:
    """Whether a continuation stopped at the token cap (recorded as ``truncated`` in a target line)."""
    return reply.finish_reason == "length"


def batch_seed(seed: int, conversations: Sequence[Conversation]) -> int:
    """A seed for one batch: the run's seed and the batch's conversations (order included)."""
    text = "\x1e".join(str(m["content"]) for c in conversations for m in c)
    return (seed * 1_000_003 + zlib.crc32(text.encode())) % (2**31)


def seed_of(options: DecodingOptions) -> int:
    """The options' seed (0 when unset)."""
    return options.seed if options.seed is not None else 0


def check_teacher_options(options: DecodingOptions, sampled: bool) -> None:
    """Refuse decodings a teacher backend does not carry out: penalties, n-gram blocks, stop strings, and
    sampling where greedy decoding is asked for (or the reverse)."""
    if options.repetition_penalty != 1.0 or options.frequency_penalty or options.presence_penalty:
        raise ValueError("teacher decoding takes no repetition, frequency or presence penalty")
    if options.no_repeat_ngram_size or options.stop:
        raise ValueError("teacher decoding takes no n-gram block and no stop strings")
    if sampled == options.greedy:
        wanted = "a temperature above 0" if sampled else "greedy options (temperature 0)"
        raise ValueError(f"{'sample' if sampled else 'generate'} needs {wanted}, got {options.describe()}")


class TeacherBackend(Protocol):
    """What target generation needs from a teacher."""

    name: str  # the teacher model's name, for provenance

    def count_tokens(self, text: str) -> int | None:
        """Tokens of ``text`` in the teacher's tokenizer (``None`` when unknown)."""
        ...

    def generate(
        self, conversations: Sequence[Conversation], options: DecodingOptions
    ) -> Iterator[list[Reply]]:
        """Yield greedy continuations (``options``' length cap and seed) batch by batch, in the order of
        ``conversations``."""
        ...

    def sample(
        self, conversations: Sequence[Conversation], options: DecodingOptions, n: int
    ) -> Iterator[list[list[Reply]]]:
        """Yield, batch by batch, ``n`` sampled continuations per conversation (``options``' temperature,
        top-p, length cap and seed), in order."""
        ...


F = TypeVar("F", bound=Callable[..., Any])


def torch_no_grad(fn: F) -> F:
    """Run ``fn`` under ``torch.no_grad`` (imported lazily)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    wrapper.__doc__ = fn.__doc__
    return wrapper  # type: ignore[return-value]


class HFBackend:
    """A local transformers causal LM: prompts rendered with ``tokenizer.apply_chat_template``, batched with
    left padding, greedy (or sampled) decoding.

    With ``fast_decoding`` (the default) the prompt prefix that every conversation of a call shares (the
    system prompt and the instruction's opening) is run through the model once; its key/value cache is
    copied over each batch, whose rows lay out as ``[shared prefix][padding][own suffix]`` with the
    padding masked and positions continuing from the prefix, so only the suffixes are encoded. Greedy
    decoding then runs a plain loop (one forward, an argmax and an end check per token) that drops a row
    from the batch as soon as it ends, instead of carrying finished rows to the longest one. Sampling keeps
    transformers' ``generate`` (its random draws, hence the samples, stay those of the reference path) with
    the shared prefix's cache handed in. ``fast_decoding=False`` is the reference: ``generate`` on the whole
    left-padded prompts; both give the same continuations (up to float rounding of batched kernels).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        batch_size: int = 16,
        name: str | None = None,
        fast_decoding: bool = True,
        prefill_call_tokens: int = 16,
    ) -> None:
        if not tokenizer.chat_template:
            raise UserError("the teacher's tokenizer has no chat template; a chat LLM is needed")
        self.model, self.tokenizer, self.batch_size = model, tokenizer, max(1, batch_size)
        self.name = name or model.config.name_or_path or type(model).__name__
        eos = model.generation_config.eos_token_id if model.generation_config is not None else None
        ids = eos if isinstance(eos, list) else [eos] if eos is not None else []
        if tokenizer.eos_token_id is not None:
            ids.append(tokenizer.eos_token_id)
        self.eos_ids = sorted({int(i) for i in ids})
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]
        self.fast_decoding = fast_decoding
        self.prefill_call_tokens = prefill_call_tokens
        # how the model's forward takes its cache, and whether it can skip all but the last logits
        self._cache_name = _cache_argument(model)
        self._keep_last = {"logits_to_keep": 1} if _accepts(model, "logits_to_keep") else {}
        self.stats = DecodingStats()

    @classmethod
    def load(cls, teacher: str, batch_size: int = 16) -> HFBackend:
        """Load ``teacher`` ("tiny", an embedded name, a folder or a hub id) with ``blsp_emo.assets``."""
        from blsp_emo.assets import load_llm

        model, tokenizer = load_llm(teacher)
        return cls(model, tokenizer, batch_size=batch_size, name=teacher)

    def render(self, messages: Sequence[Message]) -> list[int]:
        """Token ids of the conversation rendered by the teacher's chat template, ready for the reply."""
        text = self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def count_tokens(self, text: str) -> int | None:
        """Tokens of ``text`` in the teacher's tokenizer."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(
        self, conversations: Sequence[Conversation], options: DecodingOptions
    ) -> Iterator[list[Reply]]:
        """Greedy continuations, batch by batch (each batch's prompts are of similar length)."""
        import torch

        check_teacher_options(options, sampled=False)
        max_new_tokens = options.max_new_tokens
        torch.manual_seed(seed_of(options))
        prompts = [self.render(m) for m in conversations]
        prefix = self._shared_prefix(prompts)
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start : start + self.batch_size]
            if prefix is not None and _greedy_is_argmax(self.model):
                yield self._greedy_batch(chunk, max_new_tokens, prefix)
            else:
                yield self._generate_batch(chunk, max_new_tokens, prefix=prefix)

    def sample(
        self, conversations: Sequence[Conversation], options: DecodingOptions, n: int
    ) -> Iterator[list[list[Reply]]]:
        """``n`` sampled continuations per conversation; a batch holds ``batch_size`` sequences."""
        import torch

        check_teacher_options(options, sampled=True)
        prompts = [self.render(m) for m in conversations]
        prefix = self._shared_prefix(prompts)
        per_batch = max(1, self.batch_size // n)
        for start in range(0, len(conversations), per_batch):
            chunk = conversations[start : start + per_batch]
            torch.manual_seed(batch_seed(seed_of(options), chunk))
            batch = prompts[start : start + per_batch]
            flat = self._generate_batch(batch, options.max_new_tokens, (options, n), prefix)
            yield [flat[i * n : (i + 1) * n] for i in range(len(chunk))]

    def _shared_prefix(self, prompts: list[list[int]]) -> tuple[int, Any] | None:
        """The longest token prefix every prompt shares (each keeps at least one token of its own) and its
        key/value cache at batch 1, computed once per call; None without fast decoding or a common prefix."""
        if not self.fast_decoding or not prompts:
            return None
        first, shortest = prompts[0], min(len(p) for p in prompts)
        length = 0
        while length < shortest - 1 and all(p[length] == first[length] for p in prompts):
            length += 1
        if length == 0:
            return None
        return length, self._encode_prefix(first[:length])

    @torch_no_grad
    def _encode_prefix(self, ids: list[int]) -> Any:
        import torch
        from transformers import DynamicCache

        started = time.perf_counter()
        cache = DynamicCache(config=self.model.config)
        self._forward(torch.tensor([ids], device=self._device()), None, None, cache)
        self.stats.prompt_tokens += len(ids)
        self.stats.prompt_seconds += time.perf_counter() - started
        return cache

    def _device(self) -> Any:
        return next(self.model.parameters()).device

    def _forward(self, ids: Any, mask: Any, positions: Any, cache: Any) -> Any:
        """One model call on ``ids`` after ``cache``; the last position's logits (B, V) as float."""
        kwargs = {self._cache_name: cache, "use_cache": True, **self._keep_last}
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, **kwargs)
        return out.logits[:, -1, :].float()

    def _layout(self, prompts: list[list[int]], skip: int) -> tuple[Any, Any, Any]:
        """Token ids (B, W) of the prompts' suffixes after ``skip`` tokens, left-padded; the attention mask
        (B, skip + W) over prefix, padding and suffix; the suffix tokens' positions (B, W)."""
        import torch

        suffixes = [p[skip:] for p in prompts]
        width = max(len(s) for s in suffixes)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        own = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, suffix in enumerate(suffixes):
            ids[i, width - len(suffix) :] = torch.tensor(suffix)
            own[i, width - len(suffix) :] = 1
        mask = torch.cat([torch.ones((len(prompts), skip), dtype=torch.long), own], dim=1)
        positions = (own.cumsum(1) - 1 + skip).clamp(min=0)
        return ids, mask, positions

    @torch_no_grad
    def _greedy_batch(
        self, prompts: list[list[int]], max_new_tokens: int, prefix: tuple[int, Any]
    ) -> list[Reply]:
        """Greedy decoding from the shared prefix's cache; a row leaves the batch when it ends."""
        import torch

        skip, prefix_cache = prefix
        device = self._device()
        started = time.perf_counter()
        groups = prefill_groups([len(p) - skip for p in prompts], self.prefill_call_tokens)
        if len(groups) > 1 and not _mergeable(prefix_cache):
            groups = [sorted(range(len(prompts)), key=lambda i: len(prompts[i]))]
        order = [i for group in groups for i in group]
        parts, first = [], []
        for group in groups:  # each length bucket's suffixes encoded with its own (small) padding
            ids, mask, positions = (t.to(device) for t in self._layout([prompts[i] for i in group], skip))
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(group))
            first.append(self._forward(ids, mask, positions, cache))
            parts.append((cache, ids.shape[1]))
            self.stats.prompt_tokens += ids.numel()
        _, mask, _ = self._layout([prompts[i] for i in order], skip)
        mask = mask.to(device)
        cache = parts[0][0] if len(parts) == 1 else self._merge(parts, skip, mask.shape[1] - skip)
        logits = torch.cat(first)
        eos = torch.tensor(self.eos_ids, device=device)
        position = torch.tensor([[len(prompts[i])] for i in order], device=device)
        rows = torch.tensor(order, device=device)  # the prompt index of each row still decoding
        tokens = torch.full((len(prompts), max_new_tokens), self.pad_id, dtype=torch.long, device=device)
        ended = torch.full((len(prompts),), -1, dtype=torch.long, device=device)  # step of the end token
        self.stats.prompt_seconds += time.perf_counter() - started
        started = time.perf_counter()
        for step in range(max_new_tokens):
            chosen = logits.argmax(-1)
            tokens[rows, step] = chosen
            self.stats.steps += 1
            self.stats.row_steps += len(rows)
            stop = torch.isin(chosen, eos)
            if bool(stop.any()):
                ended[rows[stop]] = step
                keep = (~stop).nonzero().squeeze(1)
                if keep.numel() == 0:
                    break
                cache.batch_select_indices(keep)
                rows, chosen, mask, position = rows[keep], chosen[keep], mask[keep], position[keep]
            if step == max_new_tokens - 1:
                break
            mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
            logits = self._forward(chosen[:, None], mask, position, cache)
            position = position + 1
        self.stats.decode_seconds += time.perf_counter() - started
        completions = []
        for row, end in zip(tokens.tolist(), ended.tolist()):
            kept = row if end < 0 else row[:end]
            text = self.tokenizer.decode(kept, skip_special_tokens=True).strip()
            completions.append(teacher_reply(text, end < 0, len(kept) + (end >= 0)))
        return completions

    def _merge(self, parts: list[tuple[Any, int]], skip: int, width: int) -> Any:
        """One cache over the length buckets' caches, each bucket's suffix right-aligned to ``width``
        (the gap after the shared prefix is zeros, masked like padding)."""
        import torch
        from transformers import DynamicCache

        merged = DynamicCache(config=self.model.config)
        for index in range(len(parts[0][0].layers)):
            keys: list[Any] = []
            values: list[Any] = []
            for cache, own_width in parts:
                layer, gap = cache.layers[index], width - own_width
                for source, target in ((layer.keys, keys), (layer.values, values)):
                    if gap:
                        zeros = source.new_zeros(*source.shape[:2], gap, source.shape[3])
                        source = torch.cat([source[:, :, :skip], zeros, source[:, :, skip:]], dim=2)
                    target.append(source)
            merged.update(torch.cat(keys), torch.cat(values), index)
        return merged

    @torch_no_grad
    def _generate_batch(
        self,
        prompts: list[list[int]],
        max_new_tokens: int,
        sampling: tuple[DecodingOptions, int] | None = None,
        prefix: tuple[int, Any] | None = None,
    ) -> list[Reply]:
        """transformers ``generate`` on the batch (``sampling``: the options and n candidates per prompt,
        else greedy); with ``prefix``, from the shared prefix's cache."""
        import torch

        device = self._device()
        skip = prefix[0] if prefix is not None else 0
        suffix_ids, mask, _ = self._layout(prompts, skip)
        ids = torch.cat([torch.tensor([prompts[0][:skip]] * len(prompts), dtype=torch.long), suffix_ids], 1)
        width = ids.shape[1]
        decoding: dict[str, Any] = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        if sampling is not None:  # n candidates per prompt, consecutive in the output
            options, n = sampling
            decoding = {"do_sample": True, "temperature": options.temperature, "top_p": options.top_p}
            decoding["top_k"] = None
            if prefix is None:
                decoding["num_return_sequences"] = n
            else:  # the same expansion generate makes (each prompt repeated n times, in place)
                ids, mask = ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)
        if prefix is not None:
            cache = copy.deepcopy(prefix[1])
            cache.batch_repeat_interleave(ids.shape[0])
            decoding[self._cache_name] = cache
        out = self.model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            **decoding,
            max_new_tokens=max_new_tokens,
            eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id,
        )
        completions = []
        for row in out[:, width:].tolist():
            end = next((i for i, t in enumerate(row) if t in self.eos_ids), None)
            tokens = row if end is None else row[:end]
            text = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
            completions.append(teacher_reply(text, end is None, len(tokens) + (end is not None)))
        return completions


@dataclass
class DecodingStats:
    """What the fast greedy path did: prompt tokens run through the model (shared prefix once, padding
    included) and the seconds that took; decoding steps (one model call each), row-steps (rows in the batch
    summed over those steps) and their seconds."""

    prompt_tokens: int = 0
    prompt_seconds: float = 0.0
    steps: int = 0
    row_steps: int = 0
    decode_seconds: float = 0.0


# generation-config fields that make transformers' greedy decoding more than an argmax of the logits
_GREEDY_PROCESSORS = {
    "repetition_penalty": (None, 1.0),
    "encoder_repetition_penalty": (None, 1.0),
    "no_repeat_ngram_size": (None, 0),
    "encoder_no_repeat_ngram_size": (None, 0),
    "bad_words_ids": (None,),
    "min_length": (None, 0),
    "min_new_tokens": (None, 0),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,),
    "sequence_bias": (None,),
    "exponential_decay_length_penalty": (None,),
}


def prefill_groups(lengths: list[int], call_tokens: int) -> list[list[int]]:
    """Split rows of ``lengths`` tokens into length buckets, each encoded as one padded model call.

    A call costs about ``call_tokens`` tokens' worth of fixed work (reading the weights) plus its rows
    times its longest row: the split minimising that total over length-sorted runs (dynamic programming).
    Returns lists of row indices, shortest rows first.
    """
    if call_tokens < 0:
        raise ValueError(f"call_tokens must be >= 0, got {call_tokens}")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    best = [0.0] + [float("inf")] * len(order)  # best[j]: cost of the first j sorted rows
    cut = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        longest = lengths[order[end - 1]]
        for begin in range(end):
            cost = best[begin] + call_tokens + (end - begin) * longest
            if cost < best[end]:
                best[end], cut[end] = cost, begin
    groups, end = [], len(order)
    while end > 0:
        groups.append(order[cut[end] : end])
        end = cut[end]
    return groups[::-1]


def _mergeable(cache: Any) -> bool:
    """Whether the length buckets' caches can be joined: plain growing layers (keys/values tensors)."""
    try:
        from transformers.cache_utils import Cache, DynamicLayer
    except ImportError:
        return False
    return (
        isinstance(cache, Cache) and bool(cache.layers) and all(type(x) is DynamicLayer for x in cache.layers)
    )


def _greedy_is_argmax(model: Any) -> bool:
    """Whether the model's generation config leaves greedy decoding a plain argmax (else the fast loop
    would not give ``generate``'s continuations, and ``generate`` is used with the prefix cache)."""
    config = model.generation_config
    if config is None:
        return True
    values = config.to_dict()
    return all(values.get(field) in allowed for field, allowed in _GREEDY_PROCESSORS.items())


def _accepts(model: Any, argument: str) -> bool:
    import inspect

    return argument in inspect.signature(model.forward).parameters


def _cache_argument(model: Any) -> str:
    """The name the model's forward (and ``generate``) takes its key/value cache under."""
    return "cache" if _accepts(model, "cache") else "past_key_values"


class OpenAIBackend:
    """Any OpenAI-compatible ``/v1/chat/completions`` endpoint (vLLM serve, llama.cpp server, TGI, ...),
    through :class:`~blsp_emo.openai_client.ChatClient`.

    The server applies the model's own chat template. Requests run concurrently on a thread pool
    (``concurrency`` at a time); transient failures (connection errors, timeouts, 429, 5xx) are retried
    ``max_retries`` times by the ``openai`` package.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 3,
    ) -> None:
        self.client = ChatClient(base_url, api_key=api_key, timeout=timeout, max_retries=max_retries)
        self.base_url = self.client.base_url
        self.concurrency = max(1, concurrency)
        self.name = model or self._default_model()

    def _default_model(self) -> str:
        try:
            return self.client.models()[0]
        except (UserError, IndexError):
            raise UserError(f"{self.base_url}: cannot list models; pass --model-name") from None

    def count_tokens(self, text: str) -> int | None:
        """Unknown: the tokenizer lives on the server."""
        return None

    def complete(self, messages: Sequence[Message], options: DecodingOptions) -> Reply:
        """One chat completion with ``options`` (greedy at temperature 0, else sampled)."""
        return self.client.complete(messages, self.name, options)

    def generate(
        self, conversations: Sequence[Conversation], options: DecodingOptions
    ) -> Iterator[list[Reply]]:
        """Concurrent requests; yields results in input order, ``concurrency`` at a time."""
        check_teacher_options(options, sampled=False)
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            for start in range(0, len(conversations), self.concurrency):
                chunk = conversations[start : start + self.concurrency]
                yield list(pool.map(lambda m: self.complete(m, options), chunk))

    def sample(
        self, conversations: Sequence[Conversation], options: DecodingOptions, n: int
    ) -> Iterator[list[list[Reply]]]:
        """``n`` requests per conversation (seeds ``seed``..``seed+n-1``: servers that do not support ``n``
        still answer), ``concurrency`` at a time."""
        check_teacher_options(options, sampled=True)
        seed = seed_of(options)
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            per_chunk = max(1, self.concurrency // n)
            for start in range(0, len(conversations), per_chunk):
                chunk = conversations[start : start + per_chunk]
                jobs = [(m, options.replace(seed=seed + k)) for m in chunk for k in range(n)]
                flat = list(pool.map(lambda job: self.complete(*job), jobs))
                yield [flat[i * n : (i + 1) * n] for i in range(len(chunk))]


class VLLMBackend:
    """vLLM offline inference (GPU machines; ``pip install vllm``): ``LLM.chat`` applies the model's own
    chat template; greedy sampling."""

    def __init__(self, teacher: str, batch_size: int = 256) -> None:
        try:
            from vllm import LLM
        except ImportError:
            raise UserError(
                "the vllm backend needs vLLM: pip install 'blsp-emo[vllm]' (GPU machines)"
            ) from None
        from blsp_emo.assets import resolve

        self.name = teacher
        self.llm = LLM(model=resolve(teacher, "llm"))
        self.tokenizer = self.llm.get_tokenizer()
        self.batch_size = max(1, batch_size)

    def count_tokens(self, text: str) -> int | None:
        """Tokens of ``text`` in the teacher's tokenizer."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(
        self, conversations: Sequence[Conversation], options: DecodingOptions
    ) -> Iterator[list[Reply]]:
        """Greedy continuations; vLLM batches internally, we hand it ``batch_size`` at a time."""
        from vllm import SamplingParams

        check_teacher_options(options, sampled=False)
        params = SamplingParams(temperature=0.0, max_tokens=options.max_new_tokens, seed=seed_of(options))
        for start in range(0, len(conversations), self.batch_size):
            chunk = [list(c) for c in conversations[start : start + self.batch_size]]
            outputs = self.llm.chat(chunk, params, use_tqdm=False)
            yield [_vllm_completion(o.outputs[0]) for o in outputs]

    def sample(
        self, conversations: Sequence[Conversation], options: DecodingOptions, n: int
    ) -> Iterator[list[list[Reply]]]:
        """``n`` sampled continuations per conversation (vLLM's ``n``)."""
        from vllm import SamplingParams

        check_teacher_options(options, sampled=True)
        for start in range(0, len(conversations), self.batch_size):
            chunk = conversations[start : start + self.batch_size]
            params = SamplingParams(
                n=n,
                temperature=options.temperature,
                top_p=options.top_p,
                max_tokens=options.max_new_tokens,
                seed=batch_seed(seed_of(options), chunk),
            )
            outputs = self.llm.chat([list(c) for c in chunk], params, use_tqdm=False)
            yield [[_vllm_completion(c) for c in o.outputs] for o in outputs]


def _vllm_completion(output: Any) -> Reply:
    return teacher_reply(output.text.strip(), output.finish_reason == "length", len(output.token_ids))
