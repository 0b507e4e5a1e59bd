# Type stubs for the part of vine 5.x that amqp uses (vine has no types).
# Promise values are whatever the caller passes, hence Any.
from typing import Any, Callable, Optional

__version__: str

class Thenable: ...

class promise(Thenable):
    fun: Optional[Callable[..., Any]]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    ready: bool
    failed: bool
    cancelled: bool
    #: ``(args, kwargs)`` once called; None before
    value: Optional[tuple[tuple[Any, ...], dict[str, Any]]]
    reason: Optional[BaseException]
    def __init__(
        self,
        fun: Optional[Callable[..., Any]] = ...,
        args: Optional[tuple[Any, ...]] = ...,
        kwargs: Optional[dict[str, Any]] = ...,
        callback: Optional[Callable[..., Any]] = ...,
        on_error: Optional[Callable[..., Any]] = ...,
        weak: bool = ...,
        ignore_result: bool = ...,
    ) -> None: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def then(
        self,
        callback: Callable[..., Any],
        on_error: Optional[Callable[..., Any]] = ...,
    ) -> Thenable: ...
    def cancel(self) -> None: ...
    def throw(
        self,
        exc: Optional[BaseException] = ...,
        tb: Any = ...,
        propagate: bool = ...,
    ) -> None: ...

def maybe_promise(p: Optional[Callable[..., Any]]) -> Optional[promise]: ...
def ensure_promise(p: Optional[Callable[..., Any]]) -> promise: ...
