"""The viewer's HTTP server: the page, and tiles, PSNRs and saved views rendered on request.

Plain `http.server` (threads per request) with one render worker: tile requests carry the
page's view generation, and a request from an older generation than the newest seen is
answered 409 "stale" instead of being rendered, so after a zoom the old level's queued tiles
are dropped, not rendered. Every parameter is checked; a bad request gets a 4xx and a JSON
message, never a traceback. Only the files of the static folder are served, by name.
"""
import itertools
import json
import math
import os
import queue
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, List, Optional
from urllib.parse import parse_qs, urlsplit

import numpy as np

from utils.image_writer import write_image
from .tiles import (MAX_REGION_PIXELS, MAX_SCALE, TILE, Pane, TileCache, level_size,
                    png_bytes, region_pixels, region_psnr, tile_pixels)

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'static')
CONTENT_TYPES = {'.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
                 '.css': 'text/css; charset=utf-8', '.png': 'image/png'}
MAX_SAVE_SIDE = 8192


class BadRequest(Exception):
    """Answered with its status and message."""

    def __init__(self, message: str, status: int = HTTPStatus.BAD_REQUEST):
        super().__init__(message)
        self.status = status


class Viewer:
    """The state the handlers share: panes, the input, the HR, the caches and the worker."""

    def __init__(self, panes: List[Pane], input_png: bytes, hr: Optional[np.ndarray],
                 save_dir: str, cache_bytes: int):
        self.panes = panes
        self.input_png = input_png
        self.hr = hr
        self.save_dir = save_dir
        self.cache = TileCache(cache_bytes)
        self.generation = 0
        self.jobs: 'queue.PriorityQueue' = queue.PriorityQueue()  # newest view first
        self.order = itertools.count()
        self.static = {name: os.path.join(STATIC, name) for name in os.listdir(STATIC)
                       if os.path.splitext(name)[1] in CONTENT_TYPES}
        threading.Thread(target=self._work, daemon=True).start()

    def info(self) -> dict:
        h, w = self.panes[0].size
        return {'width': w, 'height': h, 'tile': TILE, 'max_scale': MAX_SCALE,
                'panes': [p.name for p in self.panes], 'hr': self.hr is not None}

    def _work(self) -> None:
        while True:
            newest_first, _, run, done = self.jobs.get()
            if -newest_first < self.generation:
                done(None, BadRequest('stale: the view has moved on', HTTPStatus.CONFLICT))
                continue
            try:
                done(run(), None)
            except Exception as e:  # reported to the request, never kills the worker
                done(None, e)

    def submit(self, generation: int, run: Callable[[], object], timeout: float = 600):
        """Runs `run` on the worker (the newest generation first, in order of arrival within
        one); a job whose generation is older than the newest seen is refused (409)."""
        self.generation = max(self.generation, generation)
        finished = threading.Event()
        result: Dict[str, object] = {}

        def done(value, error):
            result.update(value=value, error=error)
            finished.set()
        self.jobs.put((-generation, next(self.order), run, done))
        if not finished.wait(timeout):
            raise BadRequest('timed out', HTTPStatus.SERVICE_UNAVAILABLE)
        if result['error'] is not None:
            raise result['error']
        return result['value']


def number(params: Dict[str, List[str]], key: str, kind=float, low=None, high=None):
    """The parameter `key` as a finite number within [low, high], or BadRequest."""
    if key not in params:
        raise BadRequest(f"missing parameter '{key}'")
    text = params[key][0]
    try:
        value = kind(text)
    except ValueError:
        raise BadRequest(f"parameter '{key}' must be {'an integer' if kind is int else 'a number'}"
                         f", got '{text[:40]}'")
    if not math.isfinite(value) or (low is not None and value < low) or \
            (high is not None and value > high):
        raise BadRequest(f"parameter '{key}' = {text[:40]} is outside [{low}, {high}]")
    return value


def make_handler(viewer: Viewer):
    class Handler(BaseHTTPRequestHandler):
        server_version = 'liif-viewer'

        def log_message(self, format, *args):  # quiet: the page asks for many tiles
            pass

        def send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header('Content-Type', content_type)
            self.send_header('Content-Length', str(len(body)))
            self.send_header('Cache-Control', 'no-store')
            self.end_headers()
            self.wfile.write(body)

        def send_json(self, status: int, value) -> None:
            self.send(status, json.dumps(value).encode(), 'application/json')

        def do_GET(self):
            self.respond(self.route_get)

        def do_POST(self):
            self.respond(self.route_post)

        def respond(self, route) -> None:
            try:
                route(urlsplit(self.path))
            except BadRequest as e:
                self.send_json(e.status, {'error': str(e)})
            except ValueError as e:  # renderers' checks on regions
                self.send_json(HTTPStatus.BAD_REQUEST, {'error': str(e)})
            except (BrokenPipeError, ConnectionResetError):
                pass  # the page dropped the request (a stale tile)
            except Exception as e:  # never a traceback to the page
                self.send_json(HTTPStatus.INTERNAL_SERVER_ERROR,
                               {'error': f'{type(e).__name__}: {e}'})

        def route_get(self, url) -> None:
            params = parse_qs(url.query, keep_blank_values=True)
            if url.path == '/':
                return self.static_file('index.html')
            if url.path.startswith('/static/'):
                return self.static_file(url.path[len('/static/'):])
            if url.path == '/api/info':
                return self.send_json(HTTPStatus.OK, viewer.info())
            if url.path == '/api/input.png':
                return self.send(HTTPStatus.OK, viewer.input_png, 'image/png')
            if url.path == '/api/tile':
                return self.tile(params)
            if url.path == '/api/psnr':
                return self.psnr(params)
            raise BadRequest(f'no such page: {url.path[:80]}', HTTPStatus.NOT_FOUND)

        def route_post(self, url) -> None:
            if url.path != '/api/save':
                raise BadRequest(f'no such action: {url.path[:80]}', HTTPStatus.NOT_FOUND)
            length = number({'length': [self.headers.get('Content-Length', '')]}, 'length',
                            int, 0, 1 << 16)
            try:
                body = json.loads(self.rfile.read(length) or b'{}')
                params = {k: [str(v)] for k, v in dict(body).items()}
            except (ValueError, TypeError):
                raise BadRequest('the body must be a JSON object')
            return self.save(params)

        def static_file(self, name: str) -> None:
            path = viewer.static.get(name)  # by name only: no path ever reaches the disk
            if path is None:
                raise BadRequest(f'no such file: {name[:80]}', HTTPStatus.NOT_FOUND)
            with open(path, 'rb') as f:
                self.send(HTTPStatus.OK, f.read(), CONTENT_TYPES[os.path.splitext(name)[1]])

        def pane(self, params) -> Pane:
            return viewer.panes[number(params, 'pane', int, 0, len(viewer.panes) - 1)]

        def box(self, params):
            h, w = viewer.panes[0].size
            x0, x1 = number(params, 'x0', float, 0, w), number(params, 'x1', float, 0, w)
            y0, y1 = number(params, 'y0', float, 0, h), number(params, 'y1', float, 0, h)
            if x1 <= x0 or y1 <= y0:
                raise BadRequest(f'empty region: x {x0}..{x1}, y {y0}..{y1}')
            return x0, y0, x1, y1

        def tile(self, params) -> None:
            pane = self.pane(params)
            h, w = pane.size
            scale = number(params, 'scale', float, min(1 / h, 1 / w) * 8, MAX_SCALE)
            H, W = level_size(pane.size, scale)
            tx = number(params, 'x', int, 0, (W - 1) // TILE)
            ty = number(params, 'y', int, 0, (H - 1) // TILE)
            generation = number(params, 'gen', int, 0) if 'gen' in params else viewer.generation
            key = (viewer.panes.index(pane), H, W, tx, ty)
            data = viewer.cache.get(key)
            if data is None:
                data = viewer.submit(generation, lambda: png_bytes(
                    tile_pixels(pane, scale, tx, ty)))
                viewer.cache.put(key, data)
            self.send(HTTPStatus.OK, data, 'image/png')

        def psnr(self, params) -> None:
            if viewer.hr is None:
                raise BadRequest('no ground truth: start the viewer with --hr',
                                 HTTPStatus.NOT_FOUND)
            pane, box = self.pane(params), self.box(params)
            generation = number(params, 'gen', int, 0) if 'gen' in params else viewer.generation
            value = viewer.submit(generation, lambda: region_psnr(pane, viewer.hr, box))
            self.send_json(HTTPStatus.OK, {'pane': pane.name, 'psnr': value})

        def save(self, params) -> None:
            x0, y0, x1, y1 = self.box(params)
            width = number(params, 'width', int, 1, MAX_SAVE_SIDE)
            height = max(1, round(width * (y1 - y0) / (x1 - x0)))
            if height > MAX_SAVE_SIDE or width * height > MAX_REGION_PIXELS:
                raise BadRequest(f'a {width}x{height} view is over the limit of '
                                 f'{MAX_SAVE_SIDE} per side and {MAX_REGION_PIXELS} pixels')
            os.makedirs(viewer.save_dir, exist_ok=True)
            stamp = time.strftime('%Y%m%d-%H%M%S')
            files = []
            for i, pane in enumerate(viewer.panes):
                pixels = viewer.submit(viewer.generation, lambda p=pane: region_pixels(
                    p, (x0, y0, x1, y1), (height, width)))
                stem = os.path.splitext(pane.name)[0]
                path = os.path.join(viewer.save_dir, f'view-{stamp}-{i}-{stem}.png')
                write_image(path, (pixels * 255).round().astype(np.uint8), 8)
                files.append(path)
            self.send_json(HTTPStatus.OK, {'files': files, 'width': width, 'height': height})

    return Handler


def serve(viewer: Viewer, host: str, port: int) -> ThreadingHTTPServer:
    """A server bound to host:port (port 0: any free port), not yet serving."""
    server = ThreadingHTTPServer((host, port), make_handler(viewer))
    server.daemon_threads = True
    return server
