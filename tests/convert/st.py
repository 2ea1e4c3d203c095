#!/usr/bin/env python3
"""safetensors with the standard library only (CI has no torch): read, compare, write test files.

    st.py same A B [--ignore-metadata]   exit 0 when A and B hold the same tensors (names, dtypes, shapes, bytes)
    st.py names FILE                     print the tensor names, one a line
    st.py meta FILE KEY                  print one __metadata__ value
    st.py get FILE NAME                  print a tensor's values (F32/F16/BF16) as one JSON list
"""

import json
import struct
import sys


def read(path):
    """(tensors, metadata): tensors maps name -> (dtype, shape, bytes)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        out[name] = (info["dtype"], info["shape"], raw[8 + n + b:8 + n + e])
    return out, meta


def write(path, tensors, metadata=None):
    """tensors: name -> (dtype, shape, bytes); laid out as the reference writer does."""
    size = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "I8": 1, "U8": 1}
    order = sorted(tensors, key=lambda k: (-size[tensors[k][0]], k))
    header, blob = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for k in order:
        dtype, shape, data = tensors[k]
        header[k] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + blob)


def values(dtype, data):
    if dtype == "F32":
        return list(struct.unpack("<%df" % (len(data) // 4), data))
    if dtype == "F16":
        return list(struct.unpack("<%de" % (len(data) // 2), data))
    if dtype == "BF16":
        return [struct.unpack("<f", b"\0\0" + data[i:i + 2])[0] for i in range(0, len(data), 2)]
    raise ValueError(dtype)


def main(argv):
    cmd = argv[1]
    if cmd == "same":
        a, ma = read(argv[2])
        b, mb = read(argv[3])
        bad = sorted(set(a) ^ set(b))
        if bad:
            print("tensors in only one file:", ", ".join(bad[:8]), file=sys.stderr)
            return 1
        for k in sorted(a):
            if a[k] != b[k]:
                print("tensor %s differs: %s %s vs %s %s" % (k, a[k][0], a[k][1], b[k][0], b[k][1]), file=sys.stderr)
                return 1
        if "--ignore-metadata" not in argv and ma != mb:
            print("metadata differs", file=sys.stderr)
            return 1
        return 0
    if cmd == "names":
        print("\n".join(sorted(read(argv[2])[0])))
        return 0
    if cmd == "meta":
        print(read(argv[2])[1][argv[3]])
        return 0
    if cmd == "get":
        dtype, shape, data = read(argv[2])[0][argv[3]]
        print(json.dumps(values(dtype, data)))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
