"""What the proxy keeps in memory between requests, and why it is safe to.

Key records are *snapshots*: every admission is confirmed by the reservation transaction,
which re-reads status, expiry and policy version, and every denial drawn from a snapshot is
re-checked against the store (docs/scale-out.md). Compiled policies are keyed by (key, version)
and decrypted secrets by their ciphertext: both immutable facts.
"""

from __future__ import annotations

from collections import OrderedDict

from keybrake.core.errors import Denial
from keybrake.core.policy import Policy
from keybrake.crypto import MasterKeyError, Sealer
from keybrake.net.egress import EgressRules
from keybrake.store.base import CredentialRecord, KeyRecord
from keybrake.vendors.base import Vendor


class KeySnapshots:
    def __init__(self, sealer: Sealer, vendors: dict[str, Vendor], egress: EgressRules) -> None:
        self._sealer = sealer
        self._vendors = vendors
        self._egress = egress
        self._keys: OrderedDict[str, KeyRecord] = OrderedDict()
        self._policies: OrderedDict[tuple[str, int], Policy] = OrderedDict()
        self._secrets: dict[bytes, bytes] = {}

    def get(self, token_hash: str) -> KeyRecord | None:
        return self._keys.get(token_hash)

    def credential(self, key: KeyRecord, cred: CredentialRecord | None) -> tuple[bytes, str]:
        """(secret, base_url) for a request about to be sent; plaintexts are cached by ciphertext.

        Every caller sends the secret to the returned URL, so the URL rules of this process are
        applied here, before the secret is even decrypted: a credential written under other
        settings (plain http allowed then, or a host listed then) raises Denial
        `upstream_forbidden` (502, nothing sent). Also raises `credential_unavailable`.
        """
        # A credential of the same name added after the key's was deleted is another generation:
        # the key never binds to it (docs/security.md, credential generations).
        if cred is None or cred.vendor != key.vendor or cred.generation != key.credential_gen:
            raise Denial(
                "credential_unavailable",
                f"The credential '{key.credential}' of this key no longer exists. Do not retry; the operator "
                "must restore it.",
            )
        vendor = self._vendors[key.vendor]
        base_url = cred.base_url or vendor.default_base_url
        refusal = self._egress.refusal(base_url, vendor.name, vendor.upstream_hosts)
        if refusal is not None:
            raise Denial(
                "upstream_forbidden",
                f"Refused to send the {vendor.name} credential '{key.credential}': its {refusal} "
                "(the rules of this server's current settings). Nothing was sent. Do not retry; the operator "
                "must rotate the credential to an allowed base_url or change the settings.",
            )
        secret = self._secrets.get(cred.secret_enc)
        if secret is None:
            try:
                secret = self._sealer.open(cred.secret_enc, f"credential:{key.credential}")
            except MasterKeyError:
                raise Denial(
                    "credential_unavailable",
                    f"The credential '{key.credential}' cannot be decrypted with this server's master key.",
                ) from None
            if len(self._secrets) > 1000:
                self._secrets.clear()
            self._secrets[cred.secret_enc] = secret
        return secret, base_url

    def remember(self, thash: str, key: KeyRecord) -> None:
        self._keys[thash] = key
        self._keys.move_to_end(thash)
        if len(self._keys) > 100_000:
            self._keys.popitem(last=False)

    def policy(self, key: KeyRecord) -> Policy:
        """Compiled policies are cached by (key, version): an immutable fact, safe to keep."""
        cache_key = (key.id, key.policy_version)
        policy = self._policies.get(cache_key)
        if policy is None:
            policy = Policy.from_store(key.policy)
            self._policies[cache_key] = policy
            if len(self._policies) > 10_000:
                self._policies.popitem(last=False)
        return policy
