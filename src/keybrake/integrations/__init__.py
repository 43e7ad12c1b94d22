"""Former home of the vendor SDK helpers, now in the `keybrake-client` distribution.

`keybrake.integrations.twilio`, `.shopify` and `.postmark` re-export `keybrake_client.vendors.*`
so code written against these paths keeps working; install the client with the vendor's extra
(`pip install './client[twilio]'`). Nothing here is imported when the server starts.
"""
