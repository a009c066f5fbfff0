"""The REST server behind ``unistore serve``: any unistore backend over borgstore 0.7's wire protocol.

``protocol`` holds what client and server agree on (media type, status codes, range headers),
``app`` the aiohttp application, ``stdio`` the bridge that serves one client over stdin/stdout
(``rest://`` URLs run it over ssh), ``cli`` the command.
"""
