"""The documented deployment, for real: deploy/nginx.conf (TLS termination, load balancing) in front of two
`lepton-apps serve` replicas that share one database and finance's online state in Redis."""
import datetime as dt
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, _service_unavailable, free_port
from test_finance_pipeline import fraud_bundle, fraud_data  # noqa: F401 - fixtures

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """Write a certificate for 127.0.0.1 / localhost and its key; return (cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    crt, pem = folder / "server.crt", folder / "server.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return crt, pem


def _nginx_conf(folder: Path, https: int, http: int, replicas: list[int], crt: Path, key: Path) -> Path:
    """Return deploy/nginx.conf with this test's ports, certificate and writable paths substituted."""
    text = (ROOT / "deploy" / "nginx.conf").read_text()
    servers = re.findall(r"^\s*server 127\.0\.0\.1:\d+.*$", text, flags=re.M)
    assert len(servers) == 2, "the example config should name two replicas"
    text = text.replace(servers[0], f"        server 127.0.0.1:{replicas[0]} max_fails=3 fail_timeout=10s;")
    text = text.replace(servers[1], f"        server 127.0.0.1:{replicas[1]} max_fails=3 fail_timeout=10s;")
    text = text.replace("listen 443 ssl;", f"listen 127.0.0.1:{https} ssl;").replace("listen 80;",
                                                                                    f"listen 127.0.0.1:{http};")
    text = text.replace("/etc/ssl/lepton/server.crt", str(crt)).replace("/etc/ssl/lepton/server.key", str(key))
    text = text.replace("worker_processes auto;", "worker_processes 1;")
    temp = "".join(f"    {kind}_temp_path {folder / kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                            "scgi"))
    text = text.replace("http {\n", "http {\n" + temp + f"    access_log {folder / 'access.log'};\n", 1)
    conf = folder / "nginx.conf"
    conf.write_text(text)
    return conf


def _serve(bundle, port, db_url, state_url, prefix, log):
    """Start one replica: `lepton-apps serve` on ``port`` with the shared database and Redis state."""
    return subprocess.Popen([sys.executable, "-m", "lepton_apps.cli", "serve", str(bundle), "--port", str(port),
                             "--watch-s", "0", "--db-url", db_url, "--state-url", state_url, "--state-prefix", prefix],
                            stdout=open(log, "a"), stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _get(url, context=None, headers=None, data=None, timeout=10):
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ConnectionRefusedError):  # not listening yet
            return 0, b"", {}
        raise


@pytest.mark.slow
def test_nginx_tls_in_front_of_two_replicas_sharing_redis_state(fraud_bundle, fraud_data, redis_server,
                                                               tmp_path):  # noqa: F811
    if not Path(NGINX).exists():
        _service_unavailable("nginx is not installed ('make test' installs Debian's nginx)")
    from lepton_apps.finance.features import entity_key
    from lepton_apps.finance.state import RedisState
    from lepton_apps.store import Store

    db_url = f"sqlite:///{tmp_path / 'service.db'}"
    _, token = Store.open(db_url).create_key("desk", ["finance"])
    ports = [free_port(), free_port()]
    https, http_port = free_port(), free_port()
    crt, key = _self_signed(tmp_path)
    conf = _nginx_conf(tmp_path, https, http_port, ports, crt, key)
    log = tmp_path / "serve.log"
    procs = [_serve(fraud_bundle, p, db_url, redis_server.url, "deploy-test:", log) for p in ports]
    nginx = subprocess.run([NGINX, "-c", str(conf), "-p", str(tmp_path), "-g",
                            f"pid {tmp_path / 'nginx.pid'}; error_log {tmp_path / 'error.log'};"],
                           capture_output=True, text=True, timeout=30)
    try:
        assert nginx.returncode == 0, nginx.stderr
        tls = ssl.create_default_context(cafile=str(crt))  # the client checks the certificate
        base = f"https://127.0.0.1:{https}"
        deadline = time.time() + 120
        while _get(base + "/readyz", tls)[0] != 200:
            assert time.time() < deadline and all(p.poll() is None for p in procs), log.read_text()[-3000:]
            time.sleep(0.5)
        for p in ports:  # both replicas are up (nginx may have answered from one)
            while _get(f"http://127.0.0.1:{p}/readyz")[0] != 200:
                assert time.time() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)

        # plain HTTP is redirected to HTTPS; a client that does not trust the certificate is refused
        import http.client

        plain = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)  # does not follow the redirect
        plain.request("GET", "/readyz")
        redirect = plain.getresponse()
        assert redirect.status == 301 and redirect.getheader("Location") == "https://127.0.0.1/readyz"
        plain.close()
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(base + "/healthz", timeout=10, context=ssl.create_default_context())

        # score_one through the proxy: requests are spread over both replicas, and every one sees the others'
        _, new = fraud_data
        tx = json.loads(new.head(1).to_json(orient="records", date_format="iso"))[0]
        auth = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        assert _get(base + "/v1/finance/score_one", tls, {"content-type": "application/json"},
                    json.dumps({"transaction": tx}).encode())[0] == 401
        n = 12
        for _ in range(n):
            status, body, headers = _get(base + "/v1/finance/score_one", tls, auth,
                                         json.dumps({"transaction": tx}).encode())
            assert status == 200, body
            assert json.loads(body)["model_version"].startswith("bundle@") and headers.get("x-request-id")
        served = []
        for p in ports:
            _, text, _ = _get(f"http://127.0.0.1:{p}/metrics")
            m = re.search(rb'lepton_requests_total\{[^}]*domain="finance"[^}]*endpoint="score_one"[^}]*'
                          rb'status="200"[^}]*\} (\d+)', text)
            served.append(int(float(m.group(1))) if m else 0)
        assert sum(served) == n and min(served) > 0, served

        # the shared state holds all n transactions of that customer, whichever replica scored them
        from lepton_apps.finance import FraudScorer

        spec = FraudScorer.load(fraud_bundle, compiled="no").spec
        shared = RedisState(spec, redis_server.url, "deploy-test:")
        customer = entity_key(tx[spec.roles["customer"]])
        before = FraudScorer.load(fraud_bundle, compiled="no").state.to_frame({customer}, set())
        assert len(shared.to_frame({customer}, set())) == len(before) + n

        # every answer is in the one audit log, written by both replicas
        audit = Store.open(db_url).audit_frame()
        assert (audit["status"] == 200).sum() == n and (audit["status"] == 401).sum() == 1
    finally:
        subprocess.run([NGINX, "-c", str(conf), "-p", str(tmp_path), "-g",
                        f"pid {tmp_path / 'nginx.pid'}; error_log {tmp_path / 'error.log'};", "-s", "stop"],
                       capture_output=True, timeout=30)
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
