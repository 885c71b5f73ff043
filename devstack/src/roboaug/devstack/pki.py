"""Throw-away PKI for the dev cluster (dev/test only), made with the `openssl` CLI.

Why openssl and not a Python library: the venv does not ship `cryptography`, and every machine
that can build the stack has openssl. Keys are generated per cluster in its work dir and never
reused, so nothing here needs to be strong or long-lived beyond a test session.
"""
from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Pki:
    dir: Path
    ca_crt: Path
    ca_key: Path
    server_crt: Path
    server_key: Path
    sa_key: Path   # RSA private key: signs service-account tokens (apiserver + controller-manager)
    sa_pub: Path   # its public half: verifies them


def _openssl(*args: str, cwd: Path) -> None:
    p = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {p.stderr}")


def make_pki(d: Path, service_ip: str = "10.0.0.1") -> Pki:
    """CA, an apiserver serving cert for 127.0.0.1/localhost/kubernetes.default.svc, SA keys."""
    if not shutil.which("openssl"):
        raise RuntimeError("the dev stack needs the `openssl` command to make its certificates")
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "30", "-subj", "/CN=roboaug-devstack-ca", "-addext",
             "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=d)
    sans = ",".join(["IP:127.0.0.1", f"IP:{service_ip}", "DNS:localhost", "DNS:kubernetes",
                     "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
                     "DNS:kubernetes.default.svc.cluster.local"])
    (d / "server.ext").write_text(
        f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=kube-apiserver", cwd=d)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.crt", "-days", "30", "-extfile", "server.ext", cwd=d)
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=d)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)
    return Pki(d, d / "ca.crt", d / "ca.key", d / "server.crt", d / "server.key",
               d / "sa.key", d / "sa.pub")


def new_token() -> str:
    return secrets.token_hex(24)


def write_kubeconfig(path: Path, server: str, ca_file: Path, token: str,
                     user: str = "admin", context: str = "roboaug-dev") -> Path:
    """A token kubeconfig; YAML written by hand so this module needs no YAML dependency."""
    path.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: {context}
  cluster:
    server: {server}
    certificate-authority: {ca_file}
users:
- name: {user}
  user:
    token: {token}
contexts:
- name: {context}
  context:
    cluster: {context}
    user: {user}
current-context: {context}
""")
    path.chmod(0o600)
    return path
