import hashlib, io, json, tarfile, sys, os, time
out = sys.argv[1]
def blob(tf, data):
    d = hashlib.sha256(data).hexdigest()
    ti = tarfile.TarInfo("blobs/sha256/" + d); ti.size = len(data); ti.mtime = 0
    tf.addfile(ti, io.BytesIO(data))
    return "sha256:" + d, len(data)
# layer: bin/busybox
lb = io.BytesIO()
with tarfile.open(fileobj=lb, mode="w") as lt:
    lt.add("/bin/busybox", arcname="bin/busybox")
layer = lb.getvalue()
with tarfile.open(out, "w") as tf:
    ld, ls = blob(tf, layer)
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/bin/busybox", "sleep", "2147483647"]},
        "rootfs": {"type": "layers", "diff_ids": [ld]}}).encode()
    cd, cs = blob(tf, cfg)
    man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": ls}]}).encode()
    md, ms = blob(tf, man)
    idx = json.dumps({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": md, "size": ms, "annotations": {"io.containerd.image.name": "localhost/pause:test", "org.opencontainers.image.ref.name": "test"}}]}).encode()
    for name, data in [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", idx)]:
        ti = tarfile.TarInfo(name); ti.size = len(data); tf.addfile(ti, io.BytesIO(data))
