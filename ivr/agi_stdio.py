"""Plain ``AGI(script)``: one call per process, over stdin/stdout.

For hotlines that prefer ``AGI(/opt/hotline-eval/bin/hotline-eval-agi,hotline=12345)``
to a FastAGI server. Logs go to stderr, which Asterisk shows in its verbose log;
stdout carries nothing but AGI commands.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import BinaryIO

from ivr.agi_session import AgiSession
from ivr.reply_bounds import ReplyBounds


class StdioTransport:
    def __init__(self, reader: asyncio.StreamReader, output: BinaryIO) -> None:
        self.reader = reader
        self.output = output

    @classmethod
    async def connect(cls, input_fd: int = 0, output: BinaryIO | None = None) -> StdioTransport:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        pipe = os.fdopen(os.dup(input_fd), "rb", buffering=0)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
        return cls(reader, output or sys.stdout.buffer)

    async def read(self) -> bytes:
        return await self.reader.read(65536)

    async def write(self, data: bytes) -> None:
        # A command line is a few dozen bytes to a pipe Asterisk is reading: a blocking write is fine.
        self.output.write(data)
        self.output.flush()

    async def close(self) -> None:
        try:
            self.output.close()
        except OSError:
            pass


async def open_stdio_session(*, env_timeout: float = 5.0, reply_bounds: ReplyBounds = ReplyBounds()) -> AgiSession:
    transport = await StdioTransport.connect()
    return await AgiSession.open(transport, env_timeout=env_timeout, reply_bounds=reply_bounds)
