"""What the tests share: real processes, accounts, gateways and mounts (one package, on pytest's path).

- ``server``: a real server process on port 0 (``ServerProcess``, ``running_server``);
- ``server_api``: raw HTTP calls to it as a user (the server's own tests);
- ``engines``, ``engine_fixtures``: throwaway PostgreSQL and SeaweedFS S3 instances;
- ``accounts``: accounts and Drives in this process, and the ``megadrive`` console script;
- ``dav``: WebDAV gateways (subprocess or in-process), their clients and XML helpers;
- ``mounts``: FUSE mounts of real accounts;
- ``faults``: servers killed at chosen points; ``evil``: a server that lies;
- ``fuzzworld``: the state the fuzzers build and check.
"""
