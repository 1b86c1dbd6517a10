"""Checks every field and enum value of our ONNX subset against the onnx package's descriptors: number, type and
repeatedness (the facts the bytes on disk depend on). Usage: python3 check_against_onnx.py onnx_subset.proto"""
import sys, onnx
from google.protobuf import descriptor_pb2, text_format
import subprocess, tempfile, os
src = sys.argv[1]
d = tempfile.mkdtemp()
subprocess.check_call(["protoc", "-I", os.path.dirname(src), "--descriptor_set_out=" + d + "/s.pb", os.path.basename(src)])
fds = descriptor_pb2.FileDescriptorSet(); fds.ParseFromString(open(d + "/s.pb", "rb").read())
def walk(msgs, prefix):
    for m in msgs:
        yield prefix + m.name, m
        yield from walk(m.nested_type, prefix + m.name + ".")
bad = 0
for name, m in walk(fds.file[0].message_type, ""):
    ref = onnx
    for part in name.split("."): ref = getattr(ref, part)
    rf = {f.name: f for f in ref.DESCRIPTOR.fields}
    for f in m.field:
        r = rf.get(f.name)
        if r is None or r.number != f.number or r.type != f.type or r.is_repeated != (f.label == 3):
            print("MISMATCH", name, f.name, f.number, f.type, r and (r.number, r.type)); bad += 1
    for e in m.enum_type:
        renum = getattr(ref, e.name)
        for v in e.value:
            if renum.Value(v.name) != v.number: print("ENUM MISMATCH", name, e.name, v.name); bad += 1
print("onnx_subset.proto against the onnx package: mismatches:", bad)
sys.exit(1 if bad else 0)
