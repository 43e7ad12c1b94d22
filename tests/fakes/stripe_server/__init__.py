"""A small in-memory fake of the Stripe API (v1) on loopback, for tests.

It speaks the wire format stripe-python uses (form-encoded bodies with bracket syntax, JSON
answers) and answers in the shapes of Stripe's OpenAPI spec (API version 2020-08-27, see
stripe/openapi `openapi/spec3.json`). Only the fields tests care about, plus the ones the
spec marks as required, are filled in.

Endpoints: customers (create, retrieve, list), charges (create, retrieve, list, capture),
payment_intents (create, retrieve, list, confirm, capture), refunds (create, retrieve, list),
payouts (create, retrieve), transfers (create, retrieve) and balance. Anything else is answered
with Stripe's "Unrecognized request URL" 404.

Magic values, as in Stripe test mode: a `source` or `payment_method` of `tok_chargeDeclined` /
`pm_card_chargeDeclined` (or `...InsufficientFunds`) declines with a 402 card_error;
`pm_card_authenticationRequired` leaves a PaymentIntent in `requires_action`.

Parameters are read as Stripe reads them, Rack-style (tests/fakes/reference_parsers.py): a
plain key overwrites (`amount[]=100&amount=99999` is an amount of 99999), `x[]` appends, `x[a]`
nests, the body is merged over the query string on POST (GET reads only the query), and a
structural conflict (`amount=1&amount[]=2`) is a 400 `invalid_request_error`.

Deliberately looser than Stripe: customers, sources and destinations are not checked for
existence, and unknown parameters are accepted.

Usage, async::

    async with FakeStripe() as fake:
        ...fake.base_url...

or from synchronous tests::

    with FakeStripeThread() as t:
        ...t.base_url, t.fake.requests...
"""

from tests.fakes.stripe_server.params import DEFAULT_SECRET, StripeError, mask_key, new_id
from tests.fakes.stripe_server.server import FakeStripe, FakeStripeThread

__all__ = ["DEFAULT_SECRET", "FakeStripe", "FakeStripeThread", "StripeError", "mask_key", "new_id"]
