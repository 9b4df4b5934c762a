"""The embedded broker: kombu's filesystem transport, made safe for concurrent producers and consumers.

kombu's own transport creates a message file empty and then writes it, and its consumer
takes whatever file it lists, so a consumer polling in between reads an empty message and
the `JSONDecodeError` kills it (kombu issue 1551). Here:

- a message is written under a name consumers skip (a leading dot) and renamed into place
  once complete, on the same filesystem, so a listed message is always whole;
- a consumer claims a message by renaming it into the processed folder (one rename wins
  when several consumers race), reads it there and deletes it; nothing goes through the
  system temp directory;
- a file that does not hold a message (empty, truncated, garbage) is moved to the bad
  folder with a log line naming it, and the consumer goes on with the next message;
- the exchange table in the control folder is created the same way (complete, then linked
  into place), so a producer never reads it half-written.

Registered with kombu as the `tftsweepfs://` transport (see `app.queue`).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import deque
from pathlib import Path
from queue import Empty
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem, virtual
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

log = logging.getLogger("tftsweep.broker")

SCHEME = "tftsweepfs"


class Channel(filesystem.Channel):
    """A filesystem channel whose messages appear whole or not at all."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Names listed but not yet taken, per queue: one directory listing serves many gets.
        self._listed: dict[str, deque[str]] = {}

    @property
    def bad_folder(self) -> Path:
        return Path(self.transport_options.get("bad_folder") or Path(self.data_folder_in).parent / "bad")

    # kombu's two base classes name the second argument differently; it is passed by position.
    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Write the message under a hidden name, then rename it into the queue folder."""
        name = f"{time.time_ns():020d}_{uuid.uuid4().hex}.{queue}.msg"
        folder = Path(self.data_folder_out)
        hidden = folder / f".{name}.part"
        try:
            with open(hidden, "wb") as fh:
                fh.write(str_to_bytes(dumps(message)))
            os.replace(hidden, folder / name)
        except OSError as exc:
            hidden.unlink(missing_ok=True)
            raise ChannelError(f"cannot add message {name!r} to {folder}") from exc

    def _get(self, queue: str, timeout: Any = None) -> Any:
        """Take the oldest complete message of `queue`; raise `Empty` when there is none."""
        listed = self._listed.get(queue)
        if not listed:
            listed = self._listed[queue] = deque(self._list(queue))
        while listed:
            name = listed.popleft()
            payload = self._take(name)
            if payload is not None:
                return payload
        raise Empty()

    def _list(self, queue: str) -> list[str]:
        suffix = f".{queue}.msg"
        return sorted(
            n
            for n in os.listdir(self.data_folder_in)
            if not n.startswith(".") and n.endswith(suffix) and n.partition(".")[2] == suffix[1:]
        )

    def _take(self, name: str) -> Any | None:
        """Claim `name` by renaming it, then read it; None when another consumer won or it was bad."""
        claimed = Path(self.processed_folder) / name
        try:
            os.rename(Path(self.data_folder_in) / name, claimed)
        except FileNotFoundError:
            return None  # another consumer took it
        try:
            raw = claimed.read_bytes()
            payload = loads(bytes_to_str(raw))
            if not isinstance(payload, dict):
                raise ValueError(f"a message is a JSON object, not {type(payload).__name__}")
        except (ValueError, UnicodeDecodeError) as exc:
            self._set_aside(claimed, exc)
            return None
        if not self.store_processed:
            claimed.unlink(missing_ok=True)
        return payload

    def _set_aside(self, path: Path, exc: Exception) -> None:
        self.bad_folder.mkdir(parents=True, exist_ok=True)
        target = self.bad_folder / path.name
        os.replace(path, target)
        log.error("broker: malformed message file %s moved to %s (%s: %s)", path.name, target, type(exc).__name__, exc)

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        """Create the exchange table complete (then link it into place) before any update in place."""
        file = self._exchange_file(exchange)
        if not file.exists():
            self.control_folder.mkdir(parents=True, exist_ok=True)
            hidden = file.with_name(f".{file.name}.{uuid.uuid4().hex}.part")
            binding = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
            hidden.write_bytes(str_to_bytes(dumps([binding])))
            try:
                os.link(hidden, file)  # fails if another process created it first: then update it
            except FileExistsError:
                pass
            finally:
                hidden.unlink(missing_ok=True)
        super()._queue_bind(exchange, routing_key, pattern, queue)


class Transport(filesystem.Transport):
    """The filesystem transport with `Channel` above.

    kombu keeps one exchange/binding state per process for this transport, so a process
    that talks to a second broker folder (tests do) would skip writing its bindings there.
    Here the state belongs to the control folder.
    """

    Channel = Channel
    driver_type = SCHEME
    driver_name = SCHEME

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        folder = str(Path(client.transport_options.get("control_folder", "control")).resolve())
        self.state = _states.setdefault(folder, virtual.BrokerState())


_states: dict[str, virtual.BrokerState] = {}


TRANSPORT_ALIASES.setdefault(SCHEME, f"{__name__}:Transport")
