"""Teacher backends for target generation: local transformers, any OpenAI-compatible server, vLLM.

Each backend turns chat conversations (lists of ``{"role", "content"}`` messages) into greedy continuations
through the teacher's own chat template, and says whether each one hit the token cap (``truncated``).
``sample`` draws N candidates per conversation instead (best-of-N targets); a batch's random state is
seeded from the run's seed and the batch's conversations, so the same work gives the same samples.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from blsp_emo.errors import UserError

Messages = list[dict[str, str]]


@dataclass
class Completion:
    """One teacher continuation."""

    text: str  # decoded continuation, special tokens removed, stripped
    truncated: bool  # True when the token cap was hit before the end-of-turn token
    completion_tokens: int  # generated tokens (end-of-turn included when present)


@dataclass(frozen=True)
class Sampling:
    """Best-of-N decoding: ``n`` candidates per prompt at ``temperature`` / ``top_p``."""

    n: int = 4
    temperature: float = 0.7
    top_p: float = 0.95


def batch_seed(seed: int, conversations: list[Messages]) -> int:
    """A seed for one batch: the run's seed and the batch's conversations (order included)."""
    text = "\x1e".join(m["content"] for c in conversations for m in c)
    return (seed * 1_000_003 + zlib.crc32(text.encode())) % (2**31)


class TeacherBackend(Protocol):
    """What target generation needs from a teacher."""

    name: str  # the teacher model's name, for provenance

    def count_tokens(self, text: str) -> int | None:
        """Tokens of ``text`` in the teacher's tokenizer (``None`` when unknown)."""

    def generate(
        self, conversations: list[Messages], max_new_tokens: int, seed: int
    ) -> Iterator[list[Completion]]:
        """Yield completions batch by batch, in the order of ``conversations``."""

    def sample(
        self, conversations: list[Messages], max_new_tokens: int, seed: int, sampling: Sampling
    ) -> Iterator[list[list[Completion]]]:
        """Yield, batch by batch, ``sampling.n`` sampled completions per conversation, in order."""


def torch_no_grad(fn: Callable) -> Callable:
    """Run ``fn`` under ``torch.no_grad`` (imported lazily)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    wrapper.__doc__ = fn.__doc__
    return wrapper


class HFBackend:
    """A local transformers causal LM: prompts rendered with ``tokenizer.apply_chat_template``, sorted by
    length, batched with left padding, greedy ``generate``."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 16, name: str | None = None) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise UserError("the teacher's tokenizer has no chat template; a chat LLM is needed")
        self.model, self.tokenizer, self.batch_size = model, tokenizer, max(1, batch_size)
        self.name = name or getattr(model.config, "_name_or_path", "") or type(model).__name__
        eos = model.generation_config.eos_token_id if model.generation_config is not None else None
        ids = eos if isinstance(eos, list) else [eos] if eos is not None else []
        if tokenizer.eos_token_id is not None:
            ids.append(tokenizer.eos_token_id)
        self.eos_ids = sorted({int(i) for i in ids})
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]

    @classmethod
    def load(cls, teacher: str, batch_size: int = 16) -> HFBackend:
        """Load ``teacher`` ("tiny", an embedded name, a folder or a hub id) with ``blsp_emo.assets``."""
        from blsp_emo.assets import load_llm

        model, tokenizer = load_llm(teacher)
        return cls(model, tokenizer, batch_size=batch_size, name=teacher)

    def render(self, messages: Messages) -> list[int]:
        """Token ids of the conversation rendered by the teacher's chat template, ready for the reply."""
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def count_tokens(self, text: str) -> int | None:
        """Tokens of ``text`` in the teacher's tokenizer."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(
        self, conversations: list[Messages], max_new_tokens: int, seed: int
    ) -> Iterator[list[Completion]]:
        """Greedy continuations, batch by batch (each batch's prompts are of similar length)."""
        import torch

        torch.manual_seed(seed)
        prompts = [self.render(m) for m in conversations]
        for start in range(0, len(prompts), self.batch_size):
            yield self._generate_batch(prompts[start : start + self.batch_size], max_new_tokens)

    def sample(
        self, conversations: list[Messages], max_new_tokens: int, seed: int, sampling: Sampling
    ) -> Iterator[list[list[Completion]]]:
        """``sampling.n`` sampled continuations per conversation; a batch holds ``batch_size`` sequences."""
        import torch

        per_batch = max(1, self.batch_size // sampling.n)
        for start in range(0, len(conversations), per_batch):
            chunk = conversations[start : start + per_batch]
            torch.manual_seed(batch_seed(seed, chunk))
            flat = self._generate_batch([self.render(m) for m in chunk], max_new_tokens, sampling)
            yield [flat[i * sampling.n : (i + 1) * sampling.n] for i in range(len(chunk))]

    @torch_no_grad
    def _generate_batch(
        self, prompts: list[list[int]], max_new_tokens: int, sampling: Sampling | None = None
    ) -> list[Completion]:
        import torch

        width = max(len(p) for p in prompts)
        device = next(self.model.parameters()).device
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, prompt in enumerate(prompts):  # left padding: every prompt ends where generation starts
            ids[i, width - len(prompt) :] = torch.tensor(prompt)
            mask[i, width - len(prompt) :] = 1
        decoding: dict[str, Any] = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        if sampling is not None:  # n candidates per prompt, consecutive in the output
            decoding = {
                "do_sample": True,
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
                "top_k": None,
                "num_return_sequences": sampling.n,
            }
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
            completions.append(Completion(text, end is None, len(tokens) + (end is not None)))
        return completions


class OpenAIBackend:
    """Any OpenAI-compatible ``/v1/chat/completions`` endpoint (vLLM serve, llama.cpp server, TGI, ...).

    The server applies the model's own chat template. Requests run concurrently on a thread pool
    (``concurrency`` at a time); transient failures (connection errors, 429, 5xx) are retried.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout: float = 120.0,
        retries: int = 3,
    ) -> None:
        import os

        import httpx

        self.base_url = base_url.rstrip("/")
        key = api_key or os.environ.get("OPENAI_API_KEY") or "none"
        self.client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=timeout,
            limits=httpx.Limits(max_connections=concurrency),
        )
        self.concurrency, self.retries = max(1, concurrency), retries
        self.name = model or self._default_model()

    def _default_model(self) -> str:
        try:
            data = self._request("GET", "/models")
            return str(data["data"][0]["id"])
        except (UserError, KeyError, IndexError, TypeError):
            raise UserError(f"{self.base_url}: cannot list models; pass --model-name") from None

    def _request(self, method: str, path: str, payload: dict | None = None) -> Any:
        import httpx

        delay = 0.5
        for attempt in range(self.retries + 1):
            try:
                response = self.client.request(method, path, json=payload)
            except httpx.HTTPError as exc:
                if attempt == self.retries:
                    raise UserError(f"{self.base_url}{path}: {type(exc).__name__}: {exc}") from None
            else:
                if response.status_code == 429 or response.status_code >= 500:
                    if attempt == self.retries:
                        raise UserError(
                            f"{self.base_url}{path}: HTTP {response.status_code}: {response.text[:200]}"
                        )
                elif response.status_code >= 400:
                    raise UserError(
                        f"{self.base_url}{path}: HTTP {response.status_code}: {response.text[:200]}"
                    )
                else:
                    try:
                        return response.json()
                    except ValueError:
                        raise UserError(f"{self.base_url}{path}: the answer is not JSON") from None
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def count_tokens(self, text: str) -> int | None:
        """Unknown: the tokenizer lives on the server."""
        return None

    def complete(
        self, messages: Messages, max_new_tokens: int, seed: int, sampling: Sampling | None = None
    ) -> Completion:
        """One chat completion: greedy, or sampled at ``sampling``'s temperature and top-p."""
        payload = {
            "model": self.name,
            "messages": messages,
            "max_tokens": max_new_tokens,
            "temperature": sampling.temperature if sampling else 0.0,
            "top_p": sampling.top_p if sampling else 1.0,
            "seed": seed,
        }
        data = self._request("POST", "/chat/completions", payload)
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise UserError(
                f"{self.base_url}/chat/completions: unexpected answer {str(data)[:200]}"
            ) from None
        tokens = (data.get("usage") or {}).get("completion_tokens") or 0
        return Completion(text.strip(), choice.get("finish_reason") == "length", int(tokens))

    def generate(
        self, conversations: list[Messages], max_new_tokens: int, seed: int
    ) -> Iterator[list[Completion]]:
        """Concurrent requests; yields results in input order, ``concurrency`` at a time."""
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            for start in range(0, len(conversations), self.concurrency):
                chunk = conversations[start : start + self.concurrency]
                yield list(pool.map(lambda m: self.complete(m, max_new_tokens, seed), chunk))

    def sample(
        self, conversations: list[Messages], max_new_tokens: int, seed: int, sampling: Sampling
    ) -> Iterator[list[list[Completion]]]:
        """``sampling.n`` requests per conversation (seeds ``seed``..``seed+n-1``: servers that do not
        support ``n`` still answer), ``concurrency`` at a time."""
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            per_chunk = max(1, self.concurrency // sampling.n)
            for start in range(0, len(conversations), per_chunk):
                chunk = conversations[start : start + per_chunk]
                jobs = [(m, seed + k) for m in chunk for k in range(sampling.n)]
                flat = list(
                    pool.map(lambda job: self.complete(job[0], max_new_tokens, job[1], sampling), jobs)
                )
                yield [flat[i * sampling.n : (i + 1) * sampling.n] for i in range(len(chunk))]


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
        self, conversations: list[Messages], max_new_tokens: int, seed: int
    ) -> Iterator[list[Completion]]:
        """Greedy continuations; vLLM batches internally, we hand it ``batch_size`` at a time."""
        from vllm import SamplingParams

        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, seed=seed)
        for start in range(0, len(conversations), self.batch_size):
            outputs = self.llm.chat(conversations[start : start + self.batch_size], params, use_tqdm=False)
            yield [_vllm_completion(o.outputs[0]) for o in outputs]

    def sample(
        self, conversations: list[Messages], max_new_tokens: int, seed: int, sampling: Sampling
    ) -> Iterator[list[list[Completion]]]:
        """``sampling.n`` sampled continuations per conversation (vLLM's ``n``)."""
        from vllm import SamplingParams

        for start in range(0, len(conversations), self.batch_size):
            chunk = conversations[start : start + self.batch_size]
            params = SamplingParams(
                n=sampling.n,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_tokens=max_new_tokens,
                seed=batch_seed(seed, chunk),
            )
            outputs = self.llm.chat(chunk, params, use_tqdm=False)
            yield [[_vllm_completion(c) for c in o.outputs] for o in outputs]


def _vllm_completion(output: Any) -> Completion:
    return Completion(output.text.strip(), output.finish_reason == "length", len(output.token_ids))
