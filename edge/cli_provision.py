"""`voltbook-edge provision`: give this concentrator its identity with an installer's claim token.

    voltbook-edge provision --cloud https://vb.example --token T [--dir /etc/voltbook] [--force]

On the box: make the node's Ed25519 key (`ledger.chain.NodeKey`, the key that signs the
ledger's checkpoints) and a TLS key (EC P-256) with a certificate signing request; send the
token, the node's public key and the CSR — never a private key — to the cloud's `POST
/provision`, once; check what comes back (a certificate of *our* TLS key, CN = the node id
given, issued by the CA given; a valid cloud key and broker address); then write the keys
(0600), the certificate, the CA, the cloud's key and site.toml's `[site] node` and `[cloud]`
(`edge.site.identity`), so `voltbook-edge run --config DIR/site.toml` syncs over TLS. With a
key passphrase configured (`ledger.key_files`) both keys are written encrypted.

A box that has an identity already is refused unless `--force`. Every failure says what to do
next; the token is spent only by a request the cloud accepted.

The standard library's `urllib.request` speaks HTTP: the edge never imports the cloud.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge.site.errors import SiteConfigError
from edge.site.identity import Identity, check_free, install, store_dir
from ledger import key_files
from ledger.chain import NodeKey, load_public_key, public_key_pem
from ledger.errors import DecodeError

DEFAULT_DIR = Path("/etc/voltbook")  # where the systemd unit's site.toml lives
# Where the units keep the store and the updater's offers (`WorkingDirectory`, `ReadWritePaths`):
# a starter site.toml in DEFAULT_DIR names it; elsewhere the store goes to `data/` beside it.
SYSTEM_DATA_DIR = Path("/var/lib/voltbook")
FAILED = 2
TIMEOUT_S = 30.0
MAX_ANSWER = 1 << 20
NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
HOST = re.compile(r"[A-Za-z0-9.\-:]{1,253}")
AGAIN = "run provision again with a new token from the installer (voltbook-fw claim)"


class ProvisionError(Exception):
    """Provisioning did not happen; the message says why and what to do next."""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "provision",
        help="give this concentrator its identity with a claim token",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--cloud", required=True, help="the cloud's URL, e.g. https://vb.example")
    parser.add_argument("--token", required=True, help="the claim token from voltbook-fw claim")
    parser.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_DIR,
        help=f"where site.toml and the keys live (default {DEFAULT_DIR})",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help=f"the store's folder a new site.toml names (default {SYSTEM_DATA_DIR} with the "
        "default --dir, else data/ beside site.toml)",
    )
    parser.add_argument("--site", help="the site this box is for (its id or name): a token of "
                        "another site is then refused")  # fmt: skip
    parser.add_argument("--force", action="store_true", help="replace an existing identity")
    parser.set_defaults(func=run_provision)


def run_provision(args: argparse.Namespace) -> int:
    directory: Path = args.dir
    cloud = str(args.cloud).rstrip("/")
    try:
        if not cloud.startswith(("http://", "https://")):
            raise ProvisionError(f"--cloud {args.cloud!r} must be an http:// or https:// URL")
        if not directory.is_dir():
            raise ProvisionError(f"{directory} is not a directory: create it, or pass --dir")
        check_free(directory, force=args.force)
        secret = key_files.passphrase()  # an unusable one: refused before the token is spent
        old_store = store_dir(directory)
        node_key = NodeKey.generate()
        tls_key = ec.generate_private_key(ec.SECP256R1())
        site = None if args.site is None else (int(args.site) if args.site.isdigit() else args.site)
        answer = redeem(cloud, request_body(args.token, node_key, tls_key, site))
        identity = identity_of(answer, node_key, tls_key, secret)
        data_dir = args.data_dir or (SYSTEM_DATA_DIR if directory == DEFAULT_DIR else None)
        site_path = install(directory, identity, data_dir)
    except (ProvisionError, SiteConfigError, key_files.KeyFileError) as exc:
        print(f"voltbook-edge provision: {exc}", file=sys.stderr)
        return FAILED
    print(f"provisioned as node {identity.node}; broker {identity.broker_host}:"
          f"{identity.broker_port}; files in {directory}")  # fmt: skip
    config = answer.get("config")
    if isinstance(config, dict):
        print(f"the cloud sends its configuration (version {config.get('version')}) when the "
              "box connects")  # fmt: skip
    if old_store is not None:
        print(f"note: {old_store} holds the ledger of this box's previous node, which the "
              f"runtime refuses under {identity.node}: move it aside (keep it, it is that "
              "node's books) before run")  # fmt: skip
    print(f"next: voltbook-edge run --config {site_path}")
    return 0


def request_body(
    token: str, node_key: NodeKey, tls_key: ec.EllipticCurvePrivateKey, site: int | str | None
) -> dict[str, Any]:
    """What is sent: the token and public halves only."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "voltbook-box")]))
        .sign(tls_key, hashes.SHA256())
    )
    body: dict[str, Any] = {
        "token": token,
        "node_public_key": node_key.public_key.public_bytes_raw().hex(),
        "csr": csr.public_bytes(serialization.Encoding.PEM).decode("ascii"),
    }
    if site is not None:
        body["site"] = site
    return body


def redeem(cloud: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        cloud + "/provision",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            answer = json.loads(response.read(MAX_ANSWER))
    except urllib.error.HTTPError as exc:
        raise ProvisionError(_refusal(exc.code, _detail(exc))) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ProvisionError(
            f"cannot reach the cloud at {cloud} ({reason}): check the URL and this box's "
            "network (cable, DNS, the time), then run provision again; the token is still good"
        ) from None
    except ValueError:
        raise ProvisionError(f"{cloud} did not answer JSON: is it the Voltbook cloud?") from None
    if not isinstance(answer, dict):
        raise ProvisionError(f"{cloud} answered something else than provisioning: {AGAIN}")
    return answer


def _refusal(code: int, detail: str) -> str:
    if code == 401:
        return (
            "the cloud refused the claim token: it is unknown, already used or expired. Ask the "
            "installer for a new one (voltbook-fw claim --site …) and run provision again"
        )
    if code == 409:
        return f"the cloud cannot provision boxes by claim: {detail}"
    if code == 422:
        return f"the cloud refused this box's request: {detail}"
    return f"the cloud answered {code}: {detail}. Try again later or ask the operator"


def _detail(error: urllib.error.HTTPError) -> str:
    try:
        detail = json.loads(error.read(MAX_ANSWER)).get("detail")
    except (ValueError, AttributeError, OSError):
        detail = None
    return str(detail) if detail else str(error.reason)


def identity_of(
    answer: dict[str, Any],
    node_key: NodeKey,
    tls_key: ec.EllipticCurvePrivateKey,
    secret: bytes | None = None,
) -> Identity:
    """The identity in the cloud's answer, checked: a certificate of our own TLS key with CN
    = the node id, issued by the CA sent; a usable broker address and cloud key. The keys are
    encrypted with `secret`, the key passphrase, when there is one (`ledger.key_files`)."""
    node, broker = answer.get("node"), answer.get("broker")
    if not isinstance(node, str) or not NODE_ID.fullmatch(node):
        raise ProvisionError(f"the cloud gave an unusable node id {node!r}: {AGAIN}")
    if not isinstance(broker, dict):
        raise ProvisionError(f"the cloud's answer names no broker: {AGAIN}")
    host, port = broker.get("host"), broker.get("port")
    if not isinstance(host, str) or not HOST.fullmatch(host):
        raise ProvisionError(f"the cloud gave an unusable broker host {host!r}: {AGAIN}")
    if type(port) is not int or not 1 <= port <= 65535:
        raise ProvisionError(f"the cloud gave an unusable broker port {port!r}: {AGAIN}")
    certificate_pem, ca_pem = answer.get("certificate"), answer.get("ca")
    try:
        certificate = x509.load_pem_x509_certificate(str(certificate_pem).encode("ascii"))
        ca = x509.load_pem_x509_certificate(str(ca_pem).encode("ascii"))
        certificate.verify_directly_issued_by(ca)
        cloud_key = load_public_key(str(answer.get("cloud_public_key")).encode("ascii"))
    except (ValueError, TypeError, UnicodeEncodeError, DecodeError, InvalidSignature) as exc:
        problem = f"the cloud's certificate or key is not usable ({exc}): {AGAIN}"
        raise ProvisionError(problem) from None
    names = [str(a.value) for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [node] or certificate.public_key() != tls_key.public_key():
        raise ProvisionError(f"the cloud's certificate is not for this box as {node}: {AGAIN}")
    return Identity(
        node=node,
        certificate=str(certificate_pem),
        ca=str(ca_pem),
        broker_host=host,
        broker_port=port,
        cloud_public_key_pem=public_key_pem(cloud_key),
        node_key_pem=node_key.private_pem(secret),
        node_public_key_pem=public_key_pem(node_key.public_key),
        tls_key_pem=key_files.private_pem(tls_key, secret),
    )
