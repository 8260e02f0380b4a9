"""The writer assembles a request record's public and personal fields as
canonical JSON by hand (no mapping, no encoder): the bytes must be those
``canonical_json`` gives for the mapping the record documents, which the
chain hashes and ``audit verify`` recomputes."""

from __future__ import annotations

import json
import math
import random
import threading
from typing import Any

import pytest

import swarmgate_audit.log as audit_log
from swarmgate import CompletionRequest, CompletionResponse, SwarmgateError, TokenUsage
from swarmgate.errors import ERROR_CLASSES, NoProviderAvailableError, http_status
from swarmgate.models import Attempt
from swarmgate_audit.chain import canonical_json, json_number, json_string
from swarmgate_audit.log import _Builder

TEXT = 'aé"\\\n\u2028😀 <>'
ERRORS = [cls for cls in ERROR_CLASSES.values() if cls is not NoProviderAvailableError]
#: The documented status of each error kind, written out here independently of the log's code.
KIND_STATUS = {kind.value: cls.status_code for kind, cls in ERROR_CLASSES.items()}


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(TEXT) for _ in range(rng.randrange(1, 6)))


def _maybe(rng: random.Random) -> str | None:
    return None if rng.random() < 0.3 else _text(rng)


def _float(rng: random.Random) -> float:
    return rng.choice([0.0, -0.0, 1e16, 1e-7, 123.456, math.nan, math.inf, -math.inf, rng.random() * 1e3])


def _attempt(rng: random.Random) -> Attempt:
    ok = rng.random() < 0.5
    return Attempt(
        _text(rng),
        _text(rng),
        ok,
        _float(rng),
        cost=_float(rng),
        tokens=TokenUsage.of(rng.randrange(1000), rng.randrange(1000)),
        error_kind=None if ok else rng.choice([None, "timeout", "server_error", "no-such-kind"]),
        status=rng.choice([None, 429, 500]),
        refused=rng.random() < 0.2,
    )


def _request(rng: random.Random) -> CompletionRequest:
    return CompletionRequest.create(
        _text(rng),
        model=_text(rng),
        caller=_maybe(rng),
        user=_maybe(rng),
        tags=[_text(rng) for _ in range(rng.randrange(3))],
        metadata={"client": _maybe(rng)} if rng.random() < 0.5 else {},
    )


def _expected_data(
    request: CompletionRequest,
    response: CompletionResponse | None,
    error: SwarmgateError | None,
    attempts: tuple[Attempt, ...],
    latency_ms: float,
    route: str | None,
    stream: bool,
    bodies: Any,
) -> dict[str, Any]:
    """The documented public fields of a request record, as a mapping."""

    def finite(value: float) -> float | None:
        return value if math.isfinite(value) else None

    def status_of(a: Attempt) -> int:
        if a.ok:
            return 200
        return a.status if a.status is not None else KIND_STATUS.get(a.error_kind or "", 500)

    logged = [
        {
            "provider": a.provider,
            "model": a.model,
            "ok": a.ok,
            "status": status_of(a),
            "error_kind": a.error_kind,
            "refused": a.refused,
            "cost": finite(a.cost),
        }
        for a in attempts
    ]
    tin = sum(a.tokens.input for a in attempts)
    tout = sum(a.tokens.output for a in attempts)
    cost = math.fsum(a.cost for a in attempts)
    if response is not None:
        ok, status, kind = True, 200, None
        provider, model = response.provider, response.model
        if not attempts:
            if response.cached:
                tin, tout, cost = 0, 0, 0.0
            else:
                tin, tout, cost = response.tokens.input, response.tokens.output, response.cost
    else:
        assert error is not None
        ok, kind = False, error.kind.value
        status = http_status(error, caller_timeout_ms=None, elapsed_ms=latency_ms)
        provider, model = (attempts[-1].provider, attempts[-1].model) if attempts else (error.provider, error.model)
    return {
        "requested_model": request.model,
        "route": route,
        "provider": provider,
        "model": model,
        "ok": ok,
        "status": status,
        "error_kind": kind,
        "cost": finite(cost),
        "input_tokens": tin,
        "output_tokens": tout,
        "latency_ms": finite(latency_ms),
        "cache_hit": bool(response is not None and response.cached),
        "stream": stream,
        "attempts": logged,
        "tags": list(request.tags),
        "bodies": bodies,
    }


@pytest.mark.parametrize("seed", range(300))
def test_request_fields_are_the_canonical_json_of_the_documented_mapping(seed: int) -> None:
    rng = random.Random(seed)
    request = _request(rng)
    attempts = tuple(_attempt(rng) for _ in range(rng.randrange(3)))
    latency = _float(rng)
    route, stream = _maybe(rng), rng.random() < 0.5
    include_bodies, redact = rng.random() < 0.5, rng.random() < 0.5
    builder = _Builder(include_bodies=include_bodies, redact=redact, encryption=None)
    response: CompletionResponse | None = None
    error: SwarmgateError | None = None
    if seed % 2:
        response = CompletionResponse(
            content=_text(rng),
            provider=_text(rng),
            model=_text(rng),
            cost=_float(rng),
            latency=latency,
            tokens=TokenUsage.of(rng.randrange(100), rng.randrange(100)),
            finish_reason="stop",
            attempts=attempts,
            cached=rng.random() < 0.3,
        )
    else:
        error = rng.choice(ERRORS)(_text(rng), provider=_maybe(rng), model=_maybe(rng))
    entry = builder.request_entry(
        f"rec-{seed}",
        1_700_000_000.5,
        request,
        response=response,
        error=error,
        attempts=attempts,
        latency_ms=latency,
        route=route,
        stream=stream,
    )
    note = {"redacted": redact, "encrypted": False} if include_bodies else None
    expected = _expected_data(request, response, error, attempts, latency, route, stream, note)
    assert entry.data == canonical_json(expected)
    client = request.metadata.get("client")
    if entry.personal is None:
        assert (request.caller, request.user, client, include_bodies) == (None, None, None, False)
        return
    personal = json.loads(entry.personal)
    assert entry.personal == canonical_json(personal)
    assert (personal["caller"], personal["user"], personal["client"]) == (request.caller, request.user, client)
    assert len(personal["salt"]) == 32
    assert ("bodies" in personal) == include_bodies


@pytest.mark.parametrize(
    "value", ["", "é", '"\\', "\u2028", "😀", None, 0, -1, 10**30, 1.5, -0.0, 1e300, 5e-324, True, False, [1], {"a": 1}]
)
def test_the_scalar_encoders_agree_with_canonical_json(value: Any) -> None:
    assert json_string(value) == canonical_json(value)
    assert json_number(value) == canonical_json(value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_the_number_encoder_refuses_what_canonical_json_refuses(value: float) -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        json_number(value)
    with pytest.raises(ValueError, match="JSON compliant"):
        canonical_json(value)


@pytest.mark.parametrize("cost", [0.0, -0.0, 1e-7, 0.1 + 0.2, 1e16, math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("answered", [True, False])
def test_one_attempt_sums_as_the_general_case(cost: float, answered: bool) -> None:
    """One attempt (no failover) takes a path of its own: the bytes are those
    of the documented mapping, the sum of one cost included (fsum: -0.0 sums to 0.0)."""
    request = CompletionRequest.create("hi", model="m", caller="alice", metadata={"client": "10.0.0.1"})
    attempt = Attempt("p", "m", answered, 12.5, cost=cost, tokens=TokenUsage.of(3, 4), status=None if answered else 429)
    response: CompletionResponse | None = None
    error: SwarmgateError | None = None
    if answered:
        response = CompletionResponse(
            content="ok", provider="p", model="m", cost=0.5, latency=13.0,
            tokens=TokenUsage.of(1, 1), finish_reason="stop", attempts=(attempt,),
        )  # fmt: skip
    else:
        error = ERRORS[0]("failed", provider="p", model="m")
    builder = _Builder(include_bodies=False, redact=False, encryption=None)
    entry = builder.request_entry(
        "rec-1",
        1_700_000_000.5,
        request,
        response=response,
        error=error,
        attempts=(attempt,),
        latency_ms=13.0,
        route=None,
        stream=True,
    )
    expected = _expected_data(request, response, error, (attempt,), 13.0, None, True, None)
    assert entry.data == canonical_json(expected)


def test_the_name_table_keeps_strings_only_and_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """``_name`` encodes like ``json_string``; it keeps strings (not other
    values) and starts over when full."""
    table: dict[Any, str] = {None: "null"}
    monkeypatch.setattr(audit_log, "_NAMES", table)
    for value in ["gpt-4o", "é\u2028", 7, 1.5, True, [1], None]:
        assert audit_log._name(value) == json_string(value)
    assert set(table) == {None, "gpt-4o", "é\u2028"}
    for i in range(audit_log._NAMES_MAX + 10):
        assert audit_log._name(f"m{i}") == f'"m{i}"'
    assert len(table) <= audit_log._NAMES_MAX
    assert table[None] == "null"
    assert table[f"m{audit_log._NAMES_MAX + 9}"] == f'"m{audit_log._NAMES_MAX + 9}"'


def test_salts_are_never_handed_out_twice_across_threads_and_draws() -> None:
    builder = _Builder(include_bodies=False, redact=False, encryption=None)
    per_thread = audit_log._SALTS_PER_DRAW * 3 + 7  # several refills each
    results: list[list[str]] = [[] for _ in range(6)]
    start = threading.Barrier(len(results))

    def draw(out: list[str]) -> None:
        start.wait()
        out.extend(builder._salt() for _ in range(per_thread))

    threads = [threading.Thread(target=draw, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    salts = [salt for out in results for salt in out]
    assert len(salts) == len(set(salts)) == per_thread * len(results)
    assert all(len(salt) == 32 and int(salt, 16) >= 0 for salt in salts)
