"""Outbound HTTP: the one upstream client and the egress guard every vendor call and alert goes through."""
