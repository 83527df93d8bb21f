"""The official Python A2A SDK (a2a-sdk 1.3.0) calls the Rust agent over SPIFFE mutual TLS.

Usage: a2a_client.py BASE_URL SVID_PEM SVID_KEY BUNDLE_PEM SERVER_ID

The client's X.509-SVID and the trust bundle are the files `spiffe-mtls fetch --write`
wrote; the `ssl` context presents the SVID and verifies the server's against the bundle
(and its host name against the SVID's DNS SAN). Prints one line per check; exits non-zero
at the first surprise.
"""

import asyncio
import copy
import json
import ssl
import sys

import httpx
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.client.card_resolver import parse_agent_card
from a2a.compat.v0_3 import types as v03
from a2a.types.a2a_pb2 import Message, Part, Role, SendMessageRequest, TaskState


def ssl_context(cert: str, key: str, bundle: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=bundle)
    context.load_cert_chain(cert, key)
    return context


def server_id_of(http_response: httpx.Response) -> str:
    """The URI SAN of the certificate the server presented."""
    stream = http_response.extensions["network_stream"]
    peer = stream.get_extra_info("ssl_object").getpeercert()
    uris = [value for kind, value in peer.get("subjectAltName", ()) if kind == "URI"]
    return uris[0] if uris else "-"


def message(text: str, skill: str) -> SendMessageRequest:
    msg = Message(role=Role.ROLE_USER, message_id=f"py-{skill}-{text}", parts=[Part(text=text)])
    msg.metadata.update({"skill": skill})
    return SendMessageRequest(message=msg)


def texts(event) -> str:
    """The text an SDK stream event carries (artifacts, else messages, else status)."""
    out = []
    if event.HasField("task"):
        for artifact in event.task.artifacts:
            out += [p.text for p in artifact.parts if p.text]
    if event.HasField("artifact_update"):
        out += [p.text for p in event.artifact_update.artifact.parts if p.text]
    if event.HasField("message"):
        out += [p.text for p in event.message.parts if p.text]
    return "".join(out)


async def main(base: str, cert: str, key: str, bundle: str, server_id: str) -> None:
    context = ssl_context(cert, key, bundle)
    async with httpx.AsyncClient(verify=context, timeout=30) as http:
        # The card as published: both dialects in one document.
        async with http.stream("GET", f"{base}/.well-known/agent-card.json") as response:
            response.raise_for_status()
            presented = server_id_of(response)
            assert presented == server_id, f"server {presented}, expected {server_id}"
            raw = json.loads(await response.aread())
        legacy_card = v03.AgentCard.model_validate(raw)
        assert legacy_card.security_schemes["mtls"].root.type == "mutualTLS"
        assert legacy_card.security == [{"mtls": []}]
        print(f"card v0.3 {legacy_card.protocol_version} {legacy_card.url} "
              f"{legacy_card.preferred_transport} mutualTLS")
        card = parse_agent_card(copy.deepcopy(raw))
        assert card.security_schemes["mtls"].HasField("mtls_security_scheme")
        assert list(card.security_requirements[0].schemes) == ["mtls"]
        print(f"card v1.0 {card.supported_interfaces[0].protocol_version} "
              f"{card.supported_interfaces[0].url} mtls={server_id in card.security_schemes['mtls'].mtls_security_scheme.description}")

        # The SDK's resolver.
        card = await A2ACardResolver(http, base).get_agent_card()
        print(f"resolved {card.name} skills={','.join(s.id for s in card.skills)}")

        # SendMessage (v1.0), not streaming.
        client = ClientFactory(ClientConfig(httpx_client=http, streaming=False)).create(card)
        events = [e async for e in client.send_message(message("hello from python", "echo"))]
        state = TaskState.Name(events[-1].task.status.state) if events[-1].HasField("task") else "-"
        print(f"SendMessage {texts(events[-1])!r} state={state}")

        # SendStreamingMessage (v1.0, SSE).
        streaming = ClientFactory(ClientConfig(httpx_client=http, streaming=True)).create(card)
        events = [e async for e in streaming.send_message(message("streamed from python", "echo"))]
        kinds = [e.WhichOneof("payload") for e in events]
        print(f"SendStreamingMessage {''.join(texts(e) for e in events)!r} events={','.join(kinds)}")

        # A skill the policy refuses to this SVID.
        try:
            _ = [e async for e in client.send_message(message("tell me", "secret"))]
            print("secret NOT refused")
        except Exception as error:  # noqa: BLE001 - print whatever the SDK raised
            print(f"secret refused: {type(error).__name__}: {error}")

        # v0.3 `message/send`, by hand.
        answer = (await http.post(
            card.supported_interfaces[0].url,
            headers={"A2A-Version": "0.3"},
            json={"jsonrpc": "2.0", "id": "py-1", "method": "message/send", "params": {
                "message": {"kind": "message", "messageId": "py-v03", "role": "user",
                            "parts": [{"kind": "text", "text": "hello in v0.3"}]}}},
        )).json()
        task = answer["result"]
        print(f"message/send kind={task['kind']} state={task['status']['state']} "
              f"text={task['artifacts'][0]['parts'][0]['text']!r} "
              f"part-kind={task['artifacts'][0]['parts'][0]['kind']}")

        # v0.3 through the SDK's own v0.3 client (chosen from the v0.3 card).
        legacy = await A2ACardResolver(http, base).get_agent_card(
            http_kwargs={"headers": {"A2A-Version": "0.3"}})
        compat = ClientFactory(ClientConfig(httpx_client=http, streaming=False)).create(legacy)
        events = [e async for e in compat.send_message(message("hello via the v0.3 client", "echo"))]
        print(f"v0.3 client {type(compat._transport).__name__} {texts(events[-1])!r}")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
