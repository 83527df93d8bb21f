"""Agent card signatures with the official Python A2A SDK (a2a-sdk 1.3.0, a2a.utils.signing).

verify CARD_JSON SVID_PEM
    Verifies the card (signed by spiffe-mtls) with the SDK's verifier, given the public key of
    the first certificate of SVID_PEM (the SVID that signed it); prints "verified".
sign CARD_JSON SVID_PEM KEY_PEM OUT_JSON
    Signs the card with the SDK's signer and the SVID's key (ES256), the SVID chain in the
    protected header's x5c; writes the signed card to OUT_JSON.
"""
import base64
import hashlib
import json
import sys

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from google.protobuf import json_format

from a2a.types import AgentCard
from a2a.utils.signing import create_agent_card_signer, create_signature_verifier


def certificates(path):
    return x509.load_pem_x509_certificates(open(path, 'rb').read())


def read_card(path):
    document = json.load(open(path))
    return json_format.ParseDict(document, AgentCard(), ignore_unknown_fields=True)


def verify(card_path, svid_path):
    leaf = certificates(svid_path)[0]
    public = leaf.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    create_signature_verifier(lambda kid, jku: public, ['ES256'])(read_card(card_path))
    print('verified')


def sign(card_path, svid_path, key_path, out_path):
    chain = certificates(svid_path)
    ders = [c.public_bytes(serialization.Encoding.DER) for c in chain]
    header = {
        'alg': 'ES256',
        'kid': hashlib.sha256(ders[0]).hexdigest(),
        'typ': 'JOSE',
        'x5c': [base64.b64encode(der).decode() for der in ders],
    }
    signer = create_agent_card_signer(open(key_path, 'rb').read(), header)
    signed = signer(read_card(card_path))
    with open(out_path, 'w') as out:
        json.dump(json_format.MessageToDict(signed), out)
    print('signed')


if __name__ == '__main__':
    command, *args = sys.argv[1:]
    {'verify': verify, 'sign': sign}[command](*args)
