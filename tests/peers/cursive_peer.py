#!/usr/bin/env python3
"""cursive "peer": drive OpenStack cursive's real code paths from the CLI.

Run with the python printed by scripts/peers-venv.sh (pinned cursive 0.3.1).

Certificates are served to cursive through castellan: castellan.key_manager.API
(the function cursive's signature_utils.get_certificate calls) is replaced by
one returning DirKeyManager, a castellan KeyManager reading --cert-dir:

  <id>.pem               X.509 PEM (text before the block is fine, as written by
                         `openssl ca`); converted to DER the way castellan's
                         Barbican backend does (load_pem_x509_certificate -> DER)
  <id>.der               raw DER bytes, handed to cursive unchanged
  <id>.opaque            returned as castellan OpaqueData (format "Opaque"), to
                         reach cursive's "Invalid certificate format" branch
  <id>.keymanager-error  get() raises castellan KeyManagerError
  anything else          get() raises castellan ManagedObjectNotFoundError
  empty id               KeyManagerError('key identifier not provided'), as Barbican

Subcommands (each prints ONE JSON line on stdout, logs go to stderr):

  verify-signature --cert-dir DIR --props FILE IMAGE|-
      Nova/Glance path: signature_utils.get_verifier(...), verifier.update(chunk)
      over the image, verifier.verify().  FILE is JSON: a dict with the
      img_signature* properties, or `openstack image show -f json` output (a
      "properties" object, or the older "k='v', k2='v2'" string).  A missing
      property is passed as None (Nova reads them with .get()).
  verify-certificate --cert-dir DIR --cert-id ID [--trusted ID[,ID...]]...
      Nova's _verify_certs: certificate_utils.verify_certificate(context,
      certificate_uuid, trusted_certificate_uuids) with cursive's defaults.
  key-types       JSON list of SignatureKeyType names cursive registered.
  versions        JSON object with the versions of cursive and its stack.

Verdicts / exit codes:
  {"verdict": "valid"}                                          exit 0
  {"verdict": "invalid", "error": CLASS, "message": str(exc)}   exit 1
      (cryptography InvalidSignature or cursive SignatureVerificationError)
  {"verdict": "error", ...}    harness problem (bad props/cert file)    exit 2
  {"verdict": "crash", ...}    any other exception escaping cursive     exit 3
  {"verdict": "hang", ...}     cursive exceeded --timeout               exit 4
With --with-log, a "log" list of cursive/castellan log records is added.
"""

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import sys
import traceback

PROPERTY_KEYS = (
    "img_signature",
    "img_signature_hash_method",
    "img_signature_key_type",
    "img_signature_certificate_uuid",
)

EXIT_VALID, EXIT_INVALID, EXIT_HARNESS, EXIT_CRASH, EXIT_HANG = 0, 1, 2, 3, 4


class HarnessError(Exception):
    """Bad input to the harness itself (not a cursive behaviour)."""


class PeerTimeout(BaseException):
    """Raised from SIGALRM; BaseException so no cursive `except` swallows it."""


# --------------------------------------------------------------------------
# logging: everything to stderr, optionally captured into the JSON result


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        try:
            msg = record.getMessage()
        except Exception:  # pragma: no cover - defensive
            msg = str(record.msg)
        self.records.append(
            {"level": record.levelname, "logger": record.name, "message": msg}
        )


_capture = _Capture()


def setup_logging(verbose, with_log):
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.DEBUG if verbose else logging.WARNING)
    err.setFormatter(
        logging.Formatter("cursive_peer: %(levelname)s %(name)s: %(message)s")
    )
    root.addHandler(err)
    root.setLevel(logging.DEBUG if (verbose or with_log) else logging.WARNING)
    if with_log:
        for name in ("cursive", "castellan"):
            logging.getLogger(name).addHandler(_capture)
    logging.captureWarnings(True)


# --------------------------------------------------------------------------
# output


def emit(result, code, with_log=False):
    if with_log:
        result = dict(result)
        result["log"] = _capture.records
    sys.__stdout__.write(json.dumps(result) + "\n")
    sys.__stdout__.flush()
    return code


def exc_result(verdict, exc):
    return {
        "verdict": verdict,
        "error": type(exc).__name__,
        "message": str(exc),
    }


# --------------------------------------------------------------------------
# key manager backed by a directory


_PEM_RE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\s*.*?-----END CERTIFICATE-----", re.S
)


def make_key_manager_class():
    from castellan.common import exception as castellan_exc
    from castellan.common.objects import opaque_data
    from castellan.common.objects import x_509
    from castellan.key_manager import key_manager as km
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    class DirKeyManager(km.KeyManager):
        """Read-only castellan key manager serving certificates from a dir."""

        def __init__(self, configuration=None, cert_dir=None):
            self.conf = configuration
            self.cert_dir = cert_dir

        def _path(self, object_id, ext):
            return os.path.join(self.cert_dir, object_id + ext)

        def get(self, context, managed_object_id, metadata_only=False):
            oid = managed_object_id
            if not oid:
                # castellan's Barbican backend (_get_secret) does this.
                raise castellan_exc.KeyManagerError("key identifier not provided")
            if (
                not isinstance(oid, str)
                or "/" in oid
                or os.sep in oid
                or oid.startswith(".")
                or "\0" in oid
            ):
                raise castellan_exc.ManagedObjectNotFoundError(uuid=oid)
            pem, der = self._path(oid, ".pem"), self._path(oid, ".der")
            if os.path.isfile(pem):
                if os.path.isfile(der):
                    logging.getLogger("cursive_peer").warning(
                        "both %s and %s exist; using the PEM file", pem, der
                    )
                with open(pem, "rb") as f:
                    data = f.read()
                # Barbican stores PEM; castellan converts it to DER with
                # load_pem_x509_certificate(...).public_bytes(DER).
                m = _PEM_RE.search(data)
                if m is None:
                    raise HarnessError(f"{pem}: no PEM CERTIFICATE block")
                try:
                    cert = x509.load_pem_x509_certificate(m.group(0))
                except ValueError as e:
                    raise HarnessError(f"{pem}: unparsable certificate: {e}")
                return x_509.X509(
                    cert.public_bytes(serialization.Encoding.DER), id=oid
                )
            if os.path.isfile(der):
                with open(der, "rb") as f:
                    return x_509.X509(f.read(), id=oid)
            opaque = self._path(oid, ".opaque")
            if os.path.isfile(opaque):
                with open(opaque, "rb") as f:
                    return opaque_data.OpaqueData(f.read(), id=oid)
            if os.path.isfile(self._path(oid, ".keymanager-error")):
                raise castellan_exc.KeyManagerError(
                    reason=f"simulated key manager failure for {oid}"
                )
            raise castellan_exc.ManagedObjectNotFoundError(uuid=oid)

        # Read-only: everything else is unsupported.
        def _unsupported(self, *args, **kwargs):
            raise NotImplementedError("DirKeyManager is read-only")

        create_key = _unsupported
        create_key_pair = _unsupported
        store = _unsupported
        delete = _unsupported
        add_consumer = _unsupported
        remove_consumer = _unsupported

    return DirKeyManager


def install_key_manager(cert_dir):
    """Make castellan.key_manager.API() (as called by cursive) return ours."""
    if not os.path.isdir(cert_dir):
        raise HarnessError(f"--cert-dir {cert_dir!r} is not a directory")
    import castellan.key_manager
    from cursive import signature_utils

    # cursive does `from castellan import key_manager` and calls
    # key_manager.API() inside get_certificate: patch that module attribute.
    assert signature_utils.key_manager is castellan.key_manager
    cls = make_key_manager_class()

    def API(configuration=None):
        return cls(configuration, cert_dir=cert_dir)

    castellan.key_manager.API = API


def make_context():
    """A request context like the one Nova/Glance pass (unused by our KM)."""
    try:
        from oslo_context import context as oslo_context

        return oslo_context.RequestContext(
            user_id="imgseal-peer", project_id="imgseal-peer"
        )
    except Exception:  # pragma: no cover - fall back to Glance-less None
        return None


# --------------------------------------------------------------------------
# timeouts


@contextlib.contextmanager
def deadline(seconds):
    if not seconds or seconds <= 0:
        yield
        return

    def on_alarm(signum, frame):
        raise PeerTimeout()

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_cursive(args, body):
    """Run body() (which calls cursive) and map the outcome to verdicts."""
    from cryptography.exceptions import InvalidSignature
    from cursive import exception as cursive_exc

    invalid_types = (InvalidSignature, cursive_exc.SignatureVerificationError)
    # Some cursive versions/forks define CertificateValidationError.
    extra = getattr(cursive_exc, "CertificateValidationError", None)
    if isinstance(extra, type):
        invalid_types += (extra,)

    try:
        with contextlib.redirect_stdout(sys.stderr), deadline(args.timeout):
            body()
    except PeerTimeout:
        return emit(
            {
                "verdict": "hang",
                "error": "Timeout",
                "message": f"cursive did not return within {args.timeout:g}s",
            },
            EXIT_HANG,
            args.with_log,
        )
    except invalid_types as e:
        return emit(exc_result("invalid", e), EXIT_INVALID, args.with_log)
    except HarnessError as e:
        return emit(exc_result("error", e), EXIT_HARNESS, args.with_log)
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        return emit(exc_result("crash", e), EXIT_CRASH, args.with_log)
    return emit({"verdict": "valid"}, EXIT_VALID, args.with_log)


# --------------------------------------------------------------------------
# properties


_OSC_PROP_RE = re.compile(r"([^=,\s][^=]*?)='(.*?)'(?=, [^=,\s][^=]*?='|\s*$)", re.S)


def parse_osc_properties_string(s):
    """Parse the old `openstack image show` "k='v', k2='v2'" string form."""
    return {m.group(1): m.group(2) for m in _OSC_PROP_RE.finditer(s)}


def load_props(path):
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise HarnessError(f"--props {path}: {e}")
    if not isinstance(data, dict):
        raise HarnessError(f"--props {path}: expected a JSON object")
    props = {}
    inner = data.get("properties")
    if isinstance(inner, dict):
        props.update(inner)
    elif isinstance(inner, str):
        props.update(parse_osc_properties_string(inner))
    # Plain dict form, or Glance API image JSON with top-level properties.
    for key in PROPERTY_KEYS:
        if key in data:
            props[key] = data[key]
    return props


# --------------------------------------------------------------------------
# subcommands


def cmd_verify_signature(args):
    try:
        props = load_props(args.props)
        image = (
            sys.stdin.buffer if args.image == "-" else open(args.image, "rb")
        )
        install_key_manager(args.cert_dir)
    except (HarnessError, OSError) as e:
        return emit(exc_result("error", e), EXIT_HARNESS, args.with_log)
    from cursive import signature_utils

    context = make_context()

    def body():
        with image:
            verifier = signature_utils.get_verifier(
                context=context,
                img_signature_certificate_uuid=props.get(
                    "img_signature_certificate_uuid"
                ),
                img_signature_hash_method=props.get("img_signature_hash_method"),
                img_signature=props.get("img_signature"),
                img_signature_key_type=props.get("img_signature_key_type"),
            )
            while True:
                chunk = image.read(args.chunk_size)
                if not chunk:
                    break
                verifier.update(chunk)
            verifier.verify()

    return run_cursive(args, body)


def split_ids(values):
    out = []
    for v in values or []:
        out.extend(p for p in v.split(",") if p != "")
    return out


def cmd_verify_certificate(args):
    try:
        install_key_manager(args.cert_dir)
    except HarnessError as e:
        return emit(exc_result("error", e), EXIT_HARNESS, args.with_log)
    from cursive import certificate_utils

    context = make_context()
    trusted = split_ids(args.trusted)

    def body():
        # nova/image/glance.py _verify_certs
        certificate_utils.verify_certificate(
            context=context,
            certificate_uuid=args.cert_id,
            trusted_certificate_uuids=trusted,
        )

    return run_cursive(args, body)


def cmd_key_types(args):
    from cursive import signature_utils

    names = sorted(signature_utils.SignatureKeyType.REGISTERED_TYPES)
    sys.__stdout__.write(json.dumps(names) + "\n")
    return 0


def cmd_versions(args):
    from importlib import metadata

    out = {}
    for dist in ("cursive", "cryptography", "castellan", "oslo.serialization",
                 "oslo.utils", "oslo.log"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    try:
        from cryptography.hazmat.backends.openssl.backend import backend

        out["openssl"] = backend.openssl_version_text()
    except Exception:  # pragma: no cover
        out["openssl"] = None
    out["python"] = sys.version.split()[0]
    sys.__stdout__.write(json.dumps(out) + "\n")
    return 0


def build_parser():
    p = argparse.ArgumentParser(
        description="Drive OpenStack cursive (image signature verification).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("-v", "--verbose", action="store_true",
                   help="debug logging on stderr")
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp, default_timeout):
        sp.add_argument("--cert-dir", required=True,
                        help="directory of <id>.pem / <id>.der certificates")
        sp.add_argument("--timeout", type=float, default=default_timeout,
                        help="seconds before giving up (verdict hang, exit 4); "
                             "0 = none (default %(default)s)")
        sp.add_argument("--with-log", action="store_true",
                        help='add cursive/castellan log records as "log"')

    vs = sub.add_parser("verify-signature", help="get_verifier + update + verify")
    common(vs, 0)
    vs.add_argument("--props", required=True,
                    help="JSON: property dict or `openstack image show -f json`")
    vs.add_argument("--chunk-size", type=int, default=65536)
    vs.add_argument("image", help="image file, or - for stdin")
    vs.set_defaults(func=cmd_verify_signature)

    vc = sub.add_parser("verify-certificate",
                        help="certificate_utils.verify_certificate (Nova)")
    common(vc, 10)
    vc.add_argument("--cert-id", required=True, help="signing certificate id")
    vc.add_argument("--trusted", action="append", default=[],
                    metavar="ID[,ID...]",
                    help="trusted certificate ids, in order (repeatable)")
    vc.set_defaults(func=cmd_verify_certificate)

    kt = sub.add_parser("key-types", help="registered SignatureKeyType names")
    kt.set_defaults(func=cmd_key_types)

    vv = sub.add_parser("versions", help="versions of cursive and its stack")
    vv.set_defaults(func=cmd_versions)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, getattr(args, "with_log", False))
    # Nothing but our JSON line may reach stdout.
    with contextlib.redirect_stdout(sys.stderr):
        return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
