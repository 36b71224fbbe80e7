"""A fake for tests: CUDA cards on the CPU. Every tensor's storage carries the card it would be on.

CI has no GPU, and a replica spread over several cards fails only where a module meets an
input on another card. ``FakeCards`` is a torch function mode: ``.to("cuda:1")`` copies the
tensor on the CPU and notes that it is on cuda:1; factories with ``device=`` do the same; every
other op checks that its tensors (0-dim ones aside, as in torch) are on one card, raises
``DeviceMismatch`` where CUDA would raise, and notes its outputs on that card. ``.device``
answers with the noted card, so library code (diffusers, accelerate's hooks) sees the cards.
``numpy()`` of a tensor on a card fails, as it does on CUDA.
"""
import torch
from torch.overrides import TorchFunctionMode


class DeviceMismatch(RuntimeError):
    pass


def _card(d) -> str:
    d = d if isinstance(d, torch.device) else torch.device(d)
    return f"cuda:{d.index or 0}" if d.type == "cuda" else d.type


def _ptr(t: torch.Tensor) -> int:
    try:
        return t.untyped_storage().data_ptr()
    except Exception:
        return 0


# Cross-device in torch too: copies, assignment, and questions about a tensor.
ANY_DEVICES = {"copy_", "__setitem__", "_has_compatible_shallow_copy_type", "__set__", "set_", "__repr__", "__format__",
               "numel", "size", "dim", "__len__", "is_floating_point", "is_complex", "element_size", "data_ptr",
               "untyped_storage", "__get__", "item", "tolist", "equal"}


class FakeCards(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.cards: dict[int, str] = {}

    def __enter__(self):
        # torch.from_numpy skips torch function modes: its tensors (on the CPU, as numpy's memory
        # is) are noted here, or a storage at a reused address would keep a card's stale note.
        self._from_numpy = torch.from_numpy
        torch.from_numpy = lambda array: self._tag(self._from_numpy(array), "cpu")
        return super().__enter__()

    def __exit__(self, *exc):
        torch.from_numpy = self._from_numpy
        return super().__exit__(*exc)

    def card(self, t: torch.Tensor) -> str:
        return self.cards.get(_ptr(t), "cpu")

    def place(self, module: torch.nn.Module, card: str) -> None:
        for t in [*module.parameters(), *module.buffers()]:
            self.cards[_ptr(t)] = card

    def _tag(self, out, card):
        if isinstance(out, torch.Tensor):
            p = _ptr(out)
            if p:
                self.cards[p] = card
        elif isinstance(out, (list, tuple)):
            for o in out:
                self._tag(o, card)
        return out

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", "")
        if name == "__get__" and getattr(getattr(func, "__self__", None), "__name__", "") == "device":
            return torch.device(self.card(args[0]))
        if name in ("to", "cuda", "cpu") and args and isinstance(args[0], torch.Tensor):
            src = args[0]
            target = None
            if name == "cpu":
                target = "cpu"
            elif name == "cuda":
                target = _card(args[1] if len(args) > 1 else "cuda")
            else:
                for a in [*args[1:], kwargs.get("device")]:
                    if isinstance(a, (str, torch.device)):
                        target = _card(a); break
                    if isinstance(a, torch.Tensor):
                        target = self.card(a); break
            rest = [torch.device("cpu") if isinstance(a, (str, torch.device)) else a.dtype if isinstance(a, torch.Tensor) else a
                    for a in args[1:]]
            if kwargs.get("device") is not None:
                kwargs["device"] = "cpu"
            if name != "to":
                func, rest = torch.Tensor.to, ["cpu"]
            if target is None or target == self.card(src):
                out = func(src, *rest, **kwargs)
                return self._tag(out, self.card(src)) if out is not src else out
            kwargs["copy"] = True
            return self._tag(func(src, *rest, **kwargs), target)
        target = None
        if kwargs.get("device") is not None:
            target = _card(kwargs["device"])
            if target != "meta":
                kwargs["device"] = "cpu"
        seen, scalars = set(), set()

        def walk(x):
            if isinstance(x, torch.Tensor):
                if _ptr(x):  # 0-dim CPU tensors mix with CUDA ones in torch too
                    (seen if x.dim() > 0 else scalars).add(self.card(x))
            elif isinstance(x, (list, tuple)):
                for y in x:
                    walk(y)
            elif isinstance(x, dict):
                for y in x.values():
                    walk(y)

        if name == "numpy" and self.card(args[0]) != "cpu":
            raise DeviceMismatch(f"numpy() of a tensor on {self.card(args[0])}: move it to the CPU first")
        if name in ANY_DEVICES:
            return func(*args, **kwargs)
        if name == "__deepcopy__":  # its memo may hold tensors of other cards; the copy stays on its own
            return self._tag(func(*args, **kwargs), self.card(args[0]))
        walk(args)
        walk(kwargs)
        if len(seen) > 1:
            shapes = [(tuple(x.shape), self.card(x)) for x in [*args, *kwargs.values()] if isinstance(x, torch.Tensor)]
            raise DeviceMismatch(f"{name}: tensors on {sorted(seen)}: {shapes}")
        out = func(*args, **kwargs)
        where = seen or scalars
        return self._tag(out, target or (sorted(where)[0] if where else "cpu"))
