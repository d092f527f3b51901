"""The viewer's HTTP server: the page, and tiles, PSNRs and saved views rendered on request.

`http.server` with a bounded pool of request threads (a real listen backlog, a timeout on
every connection) and one render worker: tile requests carry the page's session (one per page
load) and its view generation, and a request from an older generation than the newest its
session has sent is answered 409 "stale" instead of being rendered, so after a zoom the old
level's queued tiles are dropped, not rendered, while another page (or a reload) is not held
back by it. Every parameter is checked; a bad request gets a 4xx and a JSON message, never a
traceback. Only the files of the static folder are served, by name.

Same-origin policy: every request must name the server itself in its Host header (a DNS
rebinding page names its own domain: 403), a request a browser marks cross-site
(Sec-Fetch-Site, Origin) is refused (403), and a save must come from the page: same Origin (or
Referer) and the page's token from /api/info, which no other site can read.
"""
import ipaddress
import itertools
import json
import math
import os
import queue
import secrets
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, List, Optional
from urllib.parse import parse_qs, urlsplit

import numpy as np

from utils.image_io.write import write_image
from .tiles import (MAX_REGION_PIXELS, MAX_SCALE, TILE, Pane, TileCache, level_size,
                    png_bytes, region_pixels, region_psnr, tile_pixels)

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'static')
CONTENT_TYPES = {'.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
                 '.css': 'text/css; charset=utf-8', '.png': 'image/png'}
MAX_SAVE_SIDE = 8192
REQUEST_THREADS = 32     # requests served at once; more wait in the pool's queue
LISTEN_BACKLOG = 512     # connections the kernel holds before accept
CONNECTION_TIMEOUT = 30  # seconds a connection may sit idle
MIN_REGION = 1e-3        # input pixels: a region side below this is no view
TOKEN_HEADER = 'X-Viewer-Token'
REQUEST_DEADLINE = 10    # seconds for a request's line, headers and body to arrive, in all
SAVES_PER_PAGE = 20      # saves one page load (one /api/info token) may make
PAGES_KEPT = 64          # the newest page tokens kept; an older page must reload to save
MAX_SAVES = 200          # files one viewer run writes at most


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
        self.saves_left: Dict[str, int] = {}  # per page token, the newest PAGES_KEPT
        self.saved = 0
        self.generations: Dict[str, int] = {}  # per page session: the newest view
        self.lock = threading.Lock()
        self.jobs: 'queue.PriorityQueue' = queue.PriorityQueue()  # newest view first
        self.order = itertools.count()
        self.static = {name: os.path.join(STATIC, name) for name in os.listdir(STATIC)
                       if os.path.splitext(name)[1] in CONTENT_TYPES}
        threading.Thread(target=self._work, daemon=True).start()

    def info(self) -> dict:
        """The page's setup, with a new save token (SAVES_PER_PAGE saves) for this page."""
        h, w = self.panes[0].size
        token = secrets.token_hex(16)
        with self.lock:
            self.saves_left[token] = SAVES_PER_PAGE
            while len(self.saves_left) > PAGES_KEPT:
                del self.saves_left[next(iter(self.saves_left))]
        return {'width': w, 'height': h, 'tile': TILE, 'max_scale': MAX_SCALE,
                'panes': [p.name for p in self.panes], 'hr': self.hr is not None,
                'token': token}

    def spend_save(self, token: str, files: int) -> None:
        """Takes one save of `files` files from the page's budget and the run's, or
        BadRequest (403 for a token no page holds, 429 when a budget is spent)."""
        with self.lock:
            left = self.saves_left.get(token)
            if left is None:
                raise BadRequest(f'forbidden: a save needs the page\'s {TOKEN_HEADER} (reload '
                                 'the page if it is old)', HTTPStatus.FORBIDDEN)
            if left < 1 or self.saved + files > MAX_SAVES:
                raise BadRequest(f'save limit reached: {SAVES_PER_PAGE} saves a page, '
                                 f'{MAX_SAVES} files a viewer run',
                                 HTTPStatus.TOO_MANY_REQUESTS)
            self.saves_left[token] = left - 1
            self.saved += files

    def newest(self, session: Optional[str]) -> int:
        """The newest generation `session` has sent (0 for a request of no session)."""
        return self.generations.get(session, 0) if session is not None else 0

    def _work(self) -> None:
        while True:
            newest_first, _, session, run, done = self.jobs.get()
            if -newest_first < self.newest(session):
                done(None, BadRequest('stale: the view has moved on', HTTPStatus.CONFLICT))
                continue
            try:
                done(run(), None)
            except Exception as e:  # reported to the request, never kills the worker
                done(None, e)

    def submit(self, session: Optional[str], generation: int, run: Callable[[], object],
               timeout: float = 600):
        """Runs `run` on the worker (the newest generation first, in order of arrival within
        one); a job whose generation is older than the newest its page session has sent is
        refused (409). A job of no session (None) is never stale."""
        if session is not None:
            with self.lock:
                if len(self.generations) > 10000 and session not in self.generations:
                    self.generations.clear()  # sessions of long-closed pages
                self.generations[session] = max(self.newest(session), generation)
        finished = threading.Event()
        result: Dict[str, object] = {}

        def done(value, error):
            result.update(value=value, error=error)
            finished.set()
        self.jobs.put((-generation, next(self.order), session, run, done))
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


def allowed_host_names(host: str) -> Optional[set]:
    """The names a request's Host may give for a server bound to `host` (None: any IP
    literal, this machine's names and localhost, for a server bound to every interface)."""
    loopback = {'localhost', '127.0.0.1', '::1'}
    if host in ('', '0.0.0.0', '::'):
        return None
    names = {host.strip('[]').lower()}
    return names | loopback if names & loopback else names


def host_allowed(header: Optional[str], names: Optional[set], port: int) -> bool:
    """Whether a Host header names this server (its port, and one of its names)."""
    if not header:
        return False
    name, _, given_port = header.strip().rpartition(':') if not header.endswith(']') \
        else (header, '', '')
    if not name or (given_port and not given_port.isdigit()):
        name, given_port = header.strip(), ''
    if (int(given_port) if given_port else 80) != port:
        return False
    name = name.strip('[]').lower()
    if names is not None:
        return name in names
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return name in {'localhost', socket.gethostname().lower(), socket.getfqdn().lower()}


class DeadlineReader:
    """A request's input stream whose reads all end by one deadline (socket.timeout after)."""

    def __init__(self, raw, connection: socket.socket, seconds: float):
        self.raw, self.connection = raw, connection
        self.deadline = time.monotonic() + seconds

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout('request too slow')
        self.connection.settimeout(left)
        return left

    def readline(self, *args):
        self._left()
        return self.raw.readline(*args)

    def read(self, *args):
        self._left()
        return self.raw.read(*args)

    def __getattr__(self, name):
        return getattr(self.raw, name)


class Handler(BaseHTTPRequestHandler):
    """The viewer's requests; `make_handler` gives it the viewer it serves, the names its Host
    header may give (None: any, see allowed_host_names) and its port."""
    viewer: Viewer
    names: Optional[set]
    port: int
    server_version = 'liif-viewer'
    timeout = CONNECTION_TIMEOUT

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
        """Strict JSON (no NaN or Infinity, which a browser's JSON.parse rejects)."""
        self.send(status, json.dumps(value, allow_nan=False).encode(), 'application/json')

    def handle_one_request(self):
        """One request, whose line, headers and body must all arrive within REQUEST_DEADLINE
        (a client sending a header line every few seconds is cut off, not waited for)."""
        self.rfile = DeadlineReader(self.rfile, self.connection, REQUEST_DEADLINE)
        try:
            super().handle_one_request()
        finally:
            self.rfile = self.rfile.raw
            self.connection.settimeout(self.timeout)

    def do_GET(self):
        self.respond(self.route_get)

    def do_POST(self):
        self.respond(self.route_post)

    def check_origin(self, state_changing: bool) -> None:
        """403 unless the request is this server's own page's (see the module doc)."""
        host = self.headers.get('Host')
        if not host_allowed(host, self.names, self.port):
            raise BadRequest(f"forbidden: Host '{(host or '')[:80]}' is not this server",
                             HTTPStatus.FORBIDDEN)
        own = f'http://{host}'
        origin = self.headers.get('Origin')
        site = self.headers.get('Sec-Fetch-Site')
        if (origin is not None and origin != own) or \
                (site is not None and site not in ('same-origin', 'none')):
            raise BadRequest('forbidden: a request from another site', HTTPStatus.FORBIDDEN)
        if state_changing:
            referer = self.headers.get('Referer', '')
            if origin is None and not referer.startswith(own + '/'):
                raise BadRequest('forbidden: a save must come from the viewer page',
                                 HTTPStatus.FORBIDDEN)
            if self.headers.get(TOKEN_HEADER, '') not in self.viewer.saves_left:
                raise BadRequest(f'forbidden: a save needs the page\'s {TOKEN_HEADER}',
                                 HTTPStatus.FORBIDDEN)

    def respond(self, route) -> None:
        try:
            self.check_origin(route == self.route_post)
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
            return self.send_json(HTTPStatus.OK, self.viewer.info())
        if url.path == '/api/input.png':
            return self.send(HTTPStatus.OK, self.viewer.input_png, 'image/png')
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
        except (ValueError, TypeError, RecursionError):
            raise BadRequest('the body must be a JSON object of numbers')
        return self.save(params)

    def static_file(self, name: str) -> None:
        path = self.viewer.static.get(name)  # by name only: no path ever reaches the disk
        if path is None:
            raise BadRequest(f'no such file: {name[:80]}', HTTPStatus.NOT_FOUND)
        with open(path, 'rb') as f:
            self.send(HTTPStatus.OK, f.read(), CONTENT_TYPES[os.path.splitext(name)[1]])

    def view(self, params):
        """(page session, view generation) of a request; without them (None, 0): a
        request that is never stale."""
        session = params.get('session', [''])[0][:64]
        if 'gen' not in params or not session:
            return None, 0
        return session, number(params, 'gen', int, 0, 1 << 62)

    def pane(self, params) -> Pane:
        return self.viewer.panes[number(params, 'pane', int, 0, len(self.viewer.panes) - 1)]

    def box(self, params):
        h, w = self.viewer.panes[0].size
        x0, x1 = number(params, 'x0', float, 0, w), number(params, 'x1', float, 0, w)
        y0, y1 = number(params, 'y0', float, 0, h), number(params, 'y1', float, 0, h)
        if x1 - x0 < MIN_REGION or y1 - y0 < MIN_REGION:
            raise BadRequest(f'empty region: x {x0}..{x1}, y {y0}..{y1} (each side must '
                             f'be at least {MIN_REGION} input pixels)')
        return x0, y0, x1, y1

    def tile(self, params) -> None:
        pane = self.pane(params)
        h, w = pane.size
        scale = number(params, 'scale', float, min(1 / h, 1 / w) * 8, MAX_SCALE)
        H, W = level_size(pane.size, scale)
        tx = number(params, 'x', int, 0, (W - 1) // TILE)
        ty = number(params, 'y', int, 0, (H - 1) // TILE)
        session, generation = self.view(params)
        key = (self.viewer.panes.index(pane), H, W, tx, ty)
        data = self.viewer.cache.get(key)
        if data is None:
            data = self.viewer.submit(session, generation, lambda: png_bytes(
                tile_pixels(pane, scale, tx, ty)))
            self.viewer.cache.put(key, data)
        self.send(HTTPStatus.OK, data, 'image/png')

    def psnr(self, params) -> None:
        if self.viewer.hr is None:
            raise BadRequest('no ground truth: start the viewer with --hr',
                             HTTPStatus.NOT_FOUND)
        pane, box = self.pane(params), self.box(params)
        session, generation = self.view(params)
        value = self.viewer.submit(session, generation,
                                   lambda: region_psnr(pane, self.viewer.hr, box))
        # An identical region has an infinite PSNR, which JSON cannot hold: null and a flag.
        self.send_json(HTTPStatus.OK, {'pane': pane.name, 'identical': not math.isfinite(value),
                                       'psnr': value if math.isfinite(value) else None})

    def save(self, params) -> None:
        x0, y0, x1, y1 = self.box(params)
        width = number(params, 'width', int, 1, MAX_SAVE_SIDE)
        height = max(1, round(width * (y1 - y0) / (x1 - x0)))
        if height > MAX_SAVE_SIDE or width * height > MAX_REGION_PIXELS:
            raise BadRequest(f'a {width}x{height} view is over the limit of '
                             f'{MAX_SAVE_SIDE} per side and {MAX_REGION_PIXELS} pixels')
        self.viewer.spend_save(self.headers.get(TOKEN_HEADER, ''), len(self.viewer.panes))
        os.makedirs(self.viewer.save_dir, exist_ok=True)
        files = []
        for i, pane in enumerate(self.viewer.panes):
            pixels = self.viewer.submit(None, 0, lambda p=pane: region_pixels(
                p, (x0, y0, x1, y1), (height, width)))
            stem = os.path.splitext(pane.name)[0]
            path = unique_path(self.viewer.save_dir, f'view-{time.strftime("%Y%m%d-%H%M%S")}'
                               f'-{i}-{stem}', '.png')
            write_image(path, (pixels * 255).round().astype(np.uint8), 8)
            files.append(path)
        self.send_json(HTTPStatus.OK, {'files': files, 'width': width, 'height': height})


def make_handler(viewer: Viewer, names: Optional[set], port: int) -> type:
    """The Handler class of one server."""
    return type('ViewerHandler', (Handler,), {'viewer': viewer, 'names': names, 'port': port})


def unique_path(folder: str, stem: str, suffix: str) -> str:
    """folder/stem+suffix, or with -2, -3, ... when taken (saves within one second),
    reserved by creating it."""
    for n in itertools.count(1):
        path = os.path.join(folder, f'{stem}{"" if n == 1 else f"-{n}"}{suffix}')
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return path
        except FileExistsError:
            continue


class PooledHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with a bounded pool of request threads and a real listen backlog:
    connections beyond the pool wait in its queue (accepted, never reset)."""
    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True

    def __init__(self, address, handler):
        super().__init__(address, handler)
        self.pool = ThreadPoolExecutor(REQUEST_THREADS, thread_name_prefix='viewer-request')

    def process_request(self, request, client_address):
        self.pool.submit(self.process_request_thread, request, client_address)

    def handle_error(self, request, client_address):
        """Quiet for a client that went away (a dropped tile, a slow client cut off)."""
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError,
                                             TimeoutError)):
            super().handle_error(request, client_address)

    def server_close(self):
        super().server_close()
        self.pool.shutdown(wait=False, cancel_futures=True)


def check_port(port: int) -> None:
    """ValueError unless `port` is 0 (any free port) to 65535."""
    if not 0 <= port <= 65535:
        raise ValueError(f"--port must be 0 (any free port) to 65535, got {port}")


def check_host(host: str) -> None:
    """ValueError unless `host` is a name or address this machine can bind to."""
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as e:
        raise ValueError(f"--host '{host}' is not an address or name this machine can bind "
                         f"to ({e}); e.g. 127.0.0.1 (this machine only) or 0.0.0.0") from None


def serve(viewer: Viewer, host: str, port: int) -> ThreadingHTTPServer:
    """A server bound to host:port (port 0: any free port), not yet serving."""
    check_port(port)
    check_host(host)
    server = PooledHTTPServer((host, port), None)
    server.RequestHandlerClass = make_handler(viewer, allowed_host_names(host),
                                              server.server_address[1])
    return server
