"""A green that never answers: accepts every connection, reads what it is sent, never replies, never closes.
`python -m bench.silent_green PORT` (bench/b_shadow.py)."""

import asyncio
import sys


async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # Keep reading so the sender's writes never block; the connection stays open until the peer gives up.
    while await reader.read(65536):
        pass
    writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(hold, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
