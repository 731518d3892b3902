"""A minimal round-robin TCP load balancer for scripts/deployment-check.sh.

Usage: python3 round_robin.py LISTEN_PORT BACKEND_PORT [BACKEND_PORT ...]

Each new client connection goes to the next backend on 127.0.0.1 that accepts it, so the check
can prove that two model-ledger processes behind one address serve the same registry. It stands
in for a real load balancer (nginx, HAProxy, a cloud LB); it is not one.
"""

import asyncio
import itertools
import sys


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def main(listen_port, backends):
    order = itertools.cycle(backends)

    async def handle(client_reader, client_writer):
        for _ in backends:
            port = next(order)
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                continue
        else:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, up_writer), pipe(up_reader, client_writer))

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), [int(p) for p in sys.argv[2:]]))
