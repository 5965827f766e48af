"""The HTTP/JSON front door: the seed's 202-and-poll shape over the same manager."""
