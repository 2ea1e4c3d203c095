"""A minimal GGUF v3 reader and writer in plain Python (no numpy), for the bench scripts and
fixture makers that need to look into llama.cpp's files or add keys to lmkit's:
  read(path)            -> GGUF with .kv (ordered dict key -> (type, value)), .tensors
                           (list of dicts name, dims, type, offset, nbytes) and .data(t) bytes
  write(path, kv, tensors, payload)  writes a file (payload(t) -> bytes for each tensor)
Types follow ggml's gguf.c (value type numbers, alignment from general.alignment)."""
import struct

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?",
           U64: "<Q", I64: "<q", F64: "<d"}
# ggml type -> (block elements, block bytes)
BLOCKS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 8: (32, 34), 12: (256, 144), 14: (256, 210), 30: (1, 2)}
TYPE_NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 8: "Q8_0", 12: "Q4_K", 14: "Q6_K", 30: "BF16"}


class GGUF:
    def __init__(self, raw):
        self.raw = raw
        self.pos = 0
        magic = self._take(4)
        if magic != b"GGUF":
            raise ValueError("not a GGUF file")
        self.version = self._scalar(U32)
        n_tensors, n_kv = self._scalar(U64), self._scalar(U64)
        self.kv = {}
        for _ in range(n_kv):
            key = self._string()
            t = self._scalar(U32)
            self.kv[key] = (t, self._value(t))
        self.tensors = []
        for _ in range(n_tensors):
            name = self._string()
            nd = self._scalar(U32)
            dims = [self._scalar(U64) for _ in range(nd)]
            t = self._scalar(U32)
            off = self._scalar(U64)
            numel = 1
            for d in dims:
                numel *= d
            be, bb = BLOCKS[t]
            self.tensors.append({"name": name, "dims": dims, "type": t, "offset": off, "nbytes": numel // be * bb})
        align = self.kv.get("general.alignment", (U32, 32))[1]
        self.data_start = (self.pos + align - 1) // align * align

    def _take(self, n):
        b = self.raw[self.pos:self.pos + n]
        self.pos += n
        return b

    def _scalar(self, t):
        fmt = _SCALAR[t]
        v = struct.unpack_from(fmt, self.raw, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return v

    def _string(self):
        n = self._scalar(U64)
        return self._take(n).decode("utf-8", "surrogateescape")

    def _value(self, t):
        if t == STRING:
            return self._string()
        if t == ARRAY:
            it = self._scalar(U32)
            n = self._scalar(U64)
            return (it, [self._value(it) for _ in range(n)])
        return self._scalar(t)

    def tensor(self, name):
        for t in self.tensors:
            if t["name"] == name:
                return t
        raise KeyError(name)

    def data(self, t):
        start = self.data_start + t["offset"]
        return self.raw[start:start + t["nbytes"]]


def read(path):
    with open(path, "rb") as f:
        return GGUF(f.read())


def _pack_value(t, v):
    if t == STRING:
        b = v.encode("utf-8", "surrogateescape")
        return struct.pack("<Q", len(b)) + b
    if t == ARRAY:
        it, items = v
        return struct.pack("<IQ", it, len(items)) + b"".join(_pack_value(it, x) for x in items)
    return struct.pack(_SCALAR[t], v)


def write(path, kv, tensors, payload):
    """kv: dict key -> (type, value); tensors: dicts with name, dims, type, nbytes."""
    align = kv.get("general.alignment", (U32, 32))[1]
    out = [b"GGUF", struct.pack("<IQQ", 3, len(tensors), len(kv))]
    for k, (t, v) in kv.items():
        out.append(_pack_value(STRING, k) + struct.pack("<I", t) + _pack_value(t, v))
    off = 0
    offsets = []
    for t in tensors:
        offsets.append(off)
        out.append(_pack_value(STRING, t["name"]) + struct.pack("<I", len(t["dims"])) +
                   b"".join(struct.pack("<Q", d) for d in t["dims"]) + struct.pack("<IQ", t["type"], off))
        off += (t["nbytes"] + align - 1) // align * align
    head = b"".join(out)
    head += b"\0" * ((align - len(head) % align) % align)
    with open(path, "wb") as f:
        f.write(head)
        for t, o in zip(tensors, offsets):
            b = payload(t)
            assert len(b) == t["nbytes"], t["name"]
            f.write(b)
            f.write(b"\0" * ((align - len(b) % align) % align))
