"""``EncryptionService``: what the plugin publishes as ``manager.extensions["encryption"]``.

Envelope encryption: every record is encrypted with a data key (AES-256-GCM,
see :mod:`~swarmgate_encryption.envelope` for the format), the data keys are
wrapped by the master key and kept in the keyring
(:mod:`~swarmgate_encryption.keyring`), and every data key of the keyring
stays in memory, unwrapped, for the life of the service.

``encrypt`` and ``decrypt`` are synchronous, cheap and thread-safe (an audit
writer thread may call them): they touch no store. Which data key is
current follows a schedule: each key has an activation time, and the
current key is the latest activated one. ``encrypt`` checks the schedule
lazily (one clock read) and switches to the next key when its time has
come. The next key is provisioned AHEAD of its activation by
:meth:`EncryptionService.refresh` (at start-up, then every
``refreshInterval`` from the plugin's background task), so that it is in
the keyring, and known to every gateway sharing the keyring, before anyone
encrypts with it. ``refresh`` also loads the keys other gateways made.

Several gateways may provision the same slot at once: each writes a key
with the same activation time; the one with the highest id wins on every
gateway once they have all read the keyring, and records made with the
other stay readable. If the keyring cannot be reached, the current key
stays in use past its rotation time (logged) until it can.
"""

from __future__ import annotations

import bisect
import math
import os
import time
from collections.abc import Callable
from typing import Any, Final

import anyio
import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from swarmgate.errors import ConfigError
from swarmgate.logs import get_logger
from swarmgate_encryption.envelope import HEADER, MAX_KEY_ID, NONCE_SIZE, TamperedError, header, key_id_of
from swarmgate_encryption.keyring import KeyRecord, KeyringError, KeyStore
from swarmgate_encryption.masterkey import KEY_SIZE, MasterKey
from swarmgate_encryption.settings import ALGORITHM, SECTION, EncryptionSettings

log = get_logger("swarmgate.encryption")

_BODY: Final = HEADER.size + NONCE_SIZE


@attrs.frozen
class _Key:
    id: int
    created: float
    activates: float
    header: bytes
    aead: AESGCM = attrs.field(repr=False, eq=False)

    @property
    def order(self) -> tuple[float, int]:
        return (self.activates, self.id)


@attrs.frozen
class _Schedule:
    """The keys by activation, the current one, and when the next one takes over."""

    ordered: tuple[_Key, ...] = ()
    current: _Key | None = None
    switch_at: float = math.inf

    @classmethod
    def at(cls, keys: tuple[_Key, ...], now: float) -> _Schedule:
        """The schedule of ``keys`` (sorted by activation) as of ``now``."""
        index = bisect.bisect_right([k.activates for k in keys], now)
        current = keys[index - 1] if index else None
        switch_at = keys[index].activates if index < len(keys) else math.inf
        return cls(keys, current, switch_at)


class EncryptionService:
    """Encrypts and decrypts records; see the module docstring.

    Build it, then ``await start()`` before use. ``clock`` is wall-clock
    seconds (``time.time``): activation times are shared between gateways,
    so their clocks must be synchronised (NTP). Counters (``encrypted``,
    ``decrypted``, ``tampered``) count this process's calls.
    """

    def __init__(
        self,
        settings: EncryptionSettings,
        master: MasterKey,
        store: KeyStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self._master = master
        self._clock = clock
        self._rotation = settings.rotation_seconds
        self._keys: dict[int, _Key] = {}
        self._schedule = _Schedule()
        self._lock = anyio.Lock()
        #: Records that cannot be used (id -> reason); their records are refused as tampered.
        self._unusable: dict[int, str] = {}
        #: Records wrapped under another master key: the master key was rotated elsewhere.
        self._foreign: dict[int, str] = {}
        self.refreshed_at: float | None = None
        self.encrypted = 0
        self.decrypted = 0
        self.tampered = 0

    @property
    def master(self) -> MasterKey:
        """The master key in use."""
        return self._master

    @property
    def index_key(self) -> bytes:
        """The key for hashing cache key names (derived from the master key)."""
        return self._master.index_key

    # -- the record path (synchronous, no I/O) -------------------------------------

    def current_key_id(self) -> int:
        """The id of the key :meth:`encrypt` uses now (switching on schedule)."""
        return self._current().id

    def _current(self) -> _Key:
        schedule = self._schedule
        if schedule.switch_at <= (now := self._clock()):
            schedule = self._schedule = _Schedule.at(schedule.ordered, now)
        key = schedule.current
        if key is None:
            raise RuntimeError("the encryption service has no data key: await start() first")
        return key

    def encrypt(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        """``plaintext`` as an envelope under the current data key, bound to
        ``aad`` (associated data: the record's purpose and identity, e.g.
        its cache key). Decrypting needs the same ``aad``."""
        key = self._current()
        nonce = os.urandom(NONCE_SIZE)
        sealed = key.aead.encrypt(nonce, plaintext, key.header + aad)
        self.encrypted += 1
        return key.header + nonce + sealed

    def decrypt(self, blob: bytes, aad: bytes = b"") -> bytes:
        """The plaintext of an envelope made by :meth:`encrypt` with the same
        ``aad``. Raises :class:`TamperedError` (counted, logged) when the
        record fails authentication or names a key this service does not
        have; nothing of such a record is ever returned."""
        data = bytes(blob)
        try:
            key_id = key_id_of(data)
        except TamperedError as exc:
            raise self._refused(exc) from None
        key = self._keys.get(key_id)
        if key is None:
            why = self._unusable.get(key_id) or self._foreign.get(key_id) or "not in the keyring"
            raise self._refused(TamperedError(f"names data key {key_id}, which is unusable here: {why}", key_id))
        try:
            plaintext = key.aead.decrypt(data[HEADER.size : _BODY], data[_BODY:], data[: HEADER.size] + aad)
        except InvalidTag:
            raise self._refused(
                TamperedError("authentication failed (the record was modified, or the associated data differs)", key_id)
            ) from None
        self.decrypted += 1
        return plaintext

    def _refused(self, error: TamperedError) -> TamperedError:
        self.tampered += 1
        log.warning("encryption_record_tampered", key_id=error.key_id, reason=error.reason)
        return error

    # -- the keyring (async) --------------------------------------------------------

    async def start(self) -> None:
        """Load the keyring; make the first data key (and the next scheduled
        one) if there is none. Raises ConfigError when data keys are wrapped
        under another master key (the wrong key, or an interrupted
        ``rotate-master``)."""
        async with self._lock:
            await self._load(initial=True)
            await self._provision()
        self._log_state("encryption_started")

    async def refresh(self) -> None:
        """Load keys made elsewhere; provision the next scheduled key if it
        is missing. Never raises: a store that cannot be reached (or any
        other failure) is logged and the current key stays in use."""
        try:
            async with self._lock:
                await self._load(initial=False)
                await self._provision()
        except Exception as exc:  # noqa: BLE001 - a refresh failure of any backend must not stop encryption
            log.warning("encryption_refresh_failed", error=f"{type(exc).__name__}: {exc}")

    async def rotate(self, *, activate_in: float = 0.0) -> int:
        """Make a new data key and return its id. It becomes current after
        ``activate_in`` seconds (0: at once, in this process; other gateways
        sharing the keyring use it after their next refresh, so give them a
        refresh interval when they may read records this one writes). Old
        keys stay for decryption; the rotation schedule is unchanged."""
        if not (activate_in >= 0 and math.isfinite(activate_in)):
            raise ValueError(f"activate_in must be a non-negative number of seconds, got {activate_in}")
        async with self._lock:
            await self._load(initial=False)
            self._refuse_foreign()
            key = await self._create(self._clock() + activate_in)
        log.info("encryption_key_rotated", key_id=key.id, activates=key.activates)
        return key.id

    def status(self) -> dict[str, Any]:
        """What the service runs with (no key material): the algorithm, the
        current key id and since when, the next scheduled key and when it
        takes over, the number of keys, the keyring, the master key's source
        and fingerprint, unusable keys, and this process's counters."""
        current = self._current()
        schedule = self._schedule
        upcoming = [k for k in schedule.ordered if k.order > current.order]
        kind, where = self.settings.master_key_source
        return {
            "algorithm": ALGORITHM,
            "current_key": current.id,
            "current_since": current.activates,
            "next_key": upcoming[0].id if upcoming else None,
            "next_rotation": upcoming[0].activates if upcoming else None,
            "key_rotation_ms": self.settings.key_rotation,
            "keys": len(self._keys),
            "key_ids": sorted(self._keys),
            "keyring": self.store.description,
            "master_key": {"source": f"{kind}:{where}", "fingerprint": self._master.fingerprint},
            "unusable_keys": {str(k): v for k, v in sorted(self._unusable.items())},
            "foreign_keys": {str(k): v for k, v in sorted(self._foreign.items())},
            "refreshed_at": self.refreshed_at,
            "encrypted": self.encrypted,
            "decrypted": self.decrypted,
            "tampered": self.tampered,
        }

    async def _load(self, *, initial: bool) -> None:
        stored = await self.store.load()
        foreign: dict[int, str] = {}
        added = False
        for key_id, data in stored.items():
            try:
                record = KeyRecord.load(data)
                if record.id != key_id:
                    raise KeyringError(f"stored under id {key_id} but names id {record.id}")
            except KeyringError as exc:
                self._mark_unusable(key_id, str(exc))
                continue
            if record.master != self._master.fingerprint:
                foreign[key_id] = f"wrapped under master key {record.master}"
                continue
            if key_id in self._keys or key_id in self._unusable:
                continue
            try:
                data_key = record.unwrap(self._master)
            except KeyringError as exc:
                self._mark_unusable(key_id, str(exc))
                continue
            self._keys[key_id] = _Key(record.id, record.created, record.activates, header(key_id), AESGCM(data_key))
            added = True
        if initial and foreign:
            kind, where = self.settings.master_key_source
            setting = "masterKeyFile" if kind == "file" else "masterKeyEnv"
            raise ConfigError(
                [
                    (
                        f"{SECTION}.{setting}",
                        f"the master key from {kind} {where} (fingerprint {self._master.fingerprint}) does not "
                        f"unwrap {len(foreign)} of the {len(stored)} data keys in the keyring ({self.store.description}; "
                        f"{next(iter(foreign.values()))}): give the master key the keyring was made with, or, "
                        "if a master key rotation was interrupted, run `encryption rotate-master` again",
                    )
                ]
            )
        for key_id in foreign.keys() - self._foreign.keys():
            log.error(
                "encryption_master_key_rotated_elsewhere",
                key_id=key_id,
                detail=foreign[key_id],
                mine=self._master.fingerprint,
                advice="restart this gateway with the new master key; no new data key is made until then",
            )
        self._foreign = foreign
        if added:
            self._reschedule()
        self.refreshed_at = self._clock()

    def _mark_unusable(self, key_id: int, reason: str) -> None:
        if key_id not in self._unusable:
            log.error("encryption_keyring_record_unusable", key_id=key_id, reason=reason)
            self._unusable[key_id] = reason

    def _reschedule(self) -> None:
        keys = tuple(sorted(self._keys.values(), key=lambda k: k.order))
        self._schedule = _Schedule.at(keys, self._clock())

    def _refuse_foreign(self) -> None:
        if self._foreign:
            raise ConfigError(
                [
                    (
                        SECTION,
                        "the keyring's data keys are now wrapped under another master key (fingerprint "
                        f"{next(iter(self._foreign.values()))}): restart with the new master key before rotating",
                    )
                ]
            )

    async def _create(self, activates: float) -> _Key:
        key_id = await self.store.allocate_id()
        if not 0 < key_id <= MAX_KEY_ID:
            raise KeyringError(f"the keyring handed out key id {key_id}, outside 1..{MAX_KEY_ID}")
        data_key = AESGCM.generate_key(bit_length=KEY_SIZE * 8)
        record = KeyRecord.wrap(self._master, key_id, self._clock(), activates, data_key)
        await self.store.put(key_id, record.dump())
        key = _Key(key_id, record.created, activates, header(key_id), AESGCM(data_key))
        self._keys[key_id] = key
        self._reschedule()
        return key

    async def _provision(self) -> None:
        """The first key if there is none; the next scheduled key if none is
        scheduled after now. Nothing while the master key was rotated
        elsewhere (a key wrapped under the old one would be lost)."""
        if self._foreign:
            return
        now = self._clock()
        schedule = self._schedule
        if schedule.current is None:  # an empty keyring (or only keys activating later: clock skew)
            key = await self._create(now)
            log.info("encryption_first_key", key_id=key.id)
        if self._rotation is None:
            return
        # At most twice: a key due now (the current one is overdue, e.g. after
        # downtime), then the next one, a rotation later.
        while (latest := self._schedule.ordered[-1]).activates <= now:
            activates = max(latest.activates + self._rotation, now)
            key = await self._create(activates)
            log.info("encryption_key_scheduled", key_id=key.id, activates=activates)

    def _log_state(self, event: str) -> None:
        status = self.status()
        log.info(
            event,
            current_key=status["current_key"],
            next_rotation=status["next_rotation"],
            keys=status["keys"],
            keyring=status["keyring"],
            master_key=status["master_key"]["fingerprint"],
        )
