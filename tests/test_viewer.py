"""viewer.py: the server's answers, and the page in a real browser (headless Chromium)."""
import http.client
import io
import json
import os
import shutil
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

import demo
import viewer as viewer_script
from conftest import REPO, shared_path
from inference import load_decoder, render_bands
from utils import calc_psnr

SAMPLE = os.path.join(REPO, 'assets', 'astronaut-128.png')


def start(argv):
    """(server, 'host:port') of a viewer built from argv, serving in a thread."""
    args = viewer_script.parse_args(argv + ['--port', '0'])
    server = viewer_script.serve(viewer_script.build(args), args.host, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, '%s:%d' % server.server_address[:2]


def get(address, path, method='GET', body=None, headers=None):
    conn = http.client.HTTPConnection(address, timeout=120)
    # http.client sends the path as it is, '..' too
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    return response.status, response.read(), response.getheader('Content-Type')


def page_headers(address):
    """What the viewer's own page sends with a save: its Origin and its token."""
    token = json.loads(get(address, '/api/info')[1])['token']
    return {'Origin': f'http://{address}', 'X-Viewer-Token': token,
            'Content-Type': 'application/json'}


@pytest.fixture(scope='module')
def tiny_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('viewer')
    server, address = start(['--input', SAMPLE, '--model',
                             shared_path('reference', 'vectors', 'tiny_liif.pth'), '--bicubic',
                             '--precision', 'fp32', '--save-dir', str(tmp / 'saved')])
    yield address, tmp
    server.shutdown()


def test_binds_to_localhost_unless_told():
    assert viewer_script.parse_args([]).host == '127.0.0.1'


def test_tiles_are_the_demo_render(tiny_server, tmp_path, capsys):
    address, _ = tiny_server
    out = tmp_path / 'x3.5.png'
    assert demo.main(['--input', SAMPLE, '--output', str(out), '--scale', '3.5', '--quiet',
                      '--model', shared_path('reference', 'vectors', 'tiny_liif.pth')]) == 0
    full = np.asarray(Image.open(out)).astype(int)   # 448 x 448
    status, data, kind = get(address, '/api/tile?pane=0&scale=3.5&x=1&y=0')
    assert status == 200 and kind == 'image/png'
    tile = np.asarray(Image.open(io.BytesIO(data))).astype(int)
    assert tile.shape == (256, 448 - 256, 3)
    diff = np.abs(tile - full[:256, 256:])
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


@pytest.mark.parametrize('path,status,message', [
    ('/api/tile?pane=9&scale=4&x=0&y=0', 400, "parameter 'pane' = 9 is outside [0, 1]"),
    ('/api/tile?pane=0&scale=four&x=0&y=0', 400, "parameter 'scale' must be a number"),
    ('/api/tile?pane=0&scale=1e300&x=0&y=0', 400, "parameter 'scale' = 1e300 is outside"),
    ('/api/tile?pane=0&scale=inf&x=0&y=0', 400, "parameter 'scale' = inf is outside"),
    ('/api/tile?pane=0&scale=4&x=2&y=0', 400, "parameter 'x' = 2 is outside [0, 1]"),
    ('/api/tile?pane=0&scale=4&x=-1&y=0', 400, "parameter 'x' = -1 is outside"),
    ('/api/tile?pane=0&scale=4&x=0.5&y=0', 400, "parameter 'x' must be an integer"),
    ('/api/tile?pane=0&scale=4&x=0', 400, "missing parameter 'y'"),
    ('/api/psnr?pane=0&x0=0&y0=0&x1=9&y1=9', 404, 'no ground truth'),
    ('/static/../viewer.py', 404, 'no such file: ../viewer.py'),
    ('/static/..%2F..%2Fetc%2Fpasswd', 404, 'no such file'),
    ('/static//etc/passwd', 404, 'no such file: /etc/passwd'),
    ('/../../etc/passwd', 404, 'no such page'),
    ('/api/nothing', 404, 'no such page: /api/nothing')])
def test_bad_requests_are_refused_with_a_message(tiny_server, path, status, message):
    got, body, kind = get(tiny_server[0], path)
    assert got == status and kind == 'application/json'
    assert message in json.loads(body)['error']


def test_save_view_writes_every_pane_and_refuses_bad_bodies(tiny_server):
    address, tmp = tiny_server
    body = json.dumps({'x0': 10, 'y0': 20, 'x1': 50, 'y1': 40, 'width': 200})
    files = []
    for _ in range(2):  # twice within a second: four files, none overwritten
        status, data, _ = get(address, '/api/save', 'POST', body, page_headers(address))
        assert status == 200
        files += json.loads(data)['files']
    assert len(set(files)) == 4 and all(Image.open(f).size == (200, 100) for f in files)
    for bad, message in [('[1, 2]', 'JSON object'), ('{"x0": 0}', "missing parameter 'x1'"),
                         (json.dumps({'x0': 0, 'y0': 0, 'x1': 9, 'y1': 9, 'width': 10 ** 6}),
                          "'width' = 1000000 is outside"),
                         ('[' * 30000 + ']' * 30000, 'JSON object'),
                         (json.dumps({'x0': 0, 'y0': 0, 'x1': 5e-324, 'y1': 5e-324,
                                      'width': 10}), 'empty region')]:
        status, data, _ = get(address, '/api/save', 'POST', bad, page_headers(address))
        assert status == 400 and message in json.loads(data)['error']
    assert sorted(os.listdir(tmp / 'saved')) == sorted(os.path.basename(f) for f in files)


@pytest.mark.parametrize('headers,message', [
    ({'Origin': 'http://evil.example'}, 'another site'),
    ({'Sec-Fetch-Site': 'cross-site'}, 'another site'),
    ({}, 'must come from the viewer page'),
    ({'Origin': None}, 'needs the page'),
    ({'Host': 'evil.example:80'}, "Host 'evil.example:80' is not this server"),
])
def test_other_sites_are_refused(tiny_server, headers, message):
    """Same-origin policy: a cross-site POST (a page the user visits), a request for another
    Host (DNS rebinding), a save without the page's token: 403, nothing saved."""
    address, tmp = tiny_server
    before = sorted(os.listdir(tmp / 'saved')) if (tmp / 'saved').exists() else []
    body = json.dumps({'x0': 10, 'y0': 20, 'x1': 50, 'y1': 40, 'width': 20})
    sent = {'Content-Type': 'application/json'}
    if headers.get('Origin', '') is None:  # the page's own origin, but no token
        sent['Origin'] = f'http://{address}'
    else:
        sent.update(headers)
    status, data, _ = get(address, '/api/save', 'POST', body, sent)
    assert status == 403 and message in json.loads(data)['error']
    if 'Host' in headers or 'Sec-Fetch-Site' in headers:
        status, data, _ = get(address, '/api/tile?pane=0&scale=2&x=0&y=0', headers=sent)
        assert status == 403
    after = sorted(os.listdir(tmp / 'saved')) if (tmp / 'saved').exists() else []
    assert after == before


def test_port_out_of_range_is_one_error_line(capsys):
    with pytest.raises(SystemExit) as stop:  # argparse's check (utils.cli.number)
        viewer_script.main(['--port', '99999'])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err == ("error: argument --port: must be an integer >= 0 and <= 65535, got '99999' "
                   "(see --help)\n")


def test_stale_generations_are_dropped_not_rendered(tiny_server):
    address, _ = tiny_server
    assert get(address, '/api/tile?pane=1&scale=2&x=0&y=0&gen=1000&session=a')[0] == 200
    status, body, _ = get(address, '/api/tile?pane=1&scale=2.5&x=0&y=0&gen=999&session=a')
    assert status == 409 and 'stale' in json.loads(body)['error']
    # Another page (or the same page reloaded) starts at generation 0: not held back.
    assert get(address, '/api/tile?pane=1&scale=2.5&x=0&y=0&gen=0&session=b')[0] == 200


def test_200_concurrent_tile_requests_are_all_answered(tiny_server):
    """More requests at once than the pool has threads: every one gets an answer (200, or a
    4xx with a body), none is reset."""
    from concurrent.futures import ThreadPoolExecutor
    address, _ = tiny_server

    def one(i):
        try:
            status, body, _ = get(address, f'/api/tile?pane={i % 2}&scale={1 + i % 7}'
                                           f'&x=0&y=0&gen={i}&session=c{i % 3}')
            return status, len(body)
        except OSError as e:
            return type(e).__name__, 0
    with ThreadPoolExecutor(200) as pool:
        answers = list(pool.map(one, range(200)))
    assert all(status in (200, 409, 429) and size > 0 for status, size in answers), answers


# The page in a browser --------------------------------------------------------------------

def chromium():
    """(chromium, chromedriver) paths; skips outside CI (fails in CI) without them."""
    browser = shutil.which('chromium') or shutil.which('chromium-browser')
    driver = shutil.which('chromedriver')
    try:
        import selenium  # noqa: F401
    except ImportError:
        browser = None
    if not (browser and driver):
        message = ('headless Chromium, chromedriver and selenium are needed (bash '
                   'scripts/setup.sh --tests installs them)')
        if os.environ.get('CI'):
            pytest.fail(message)
        pytest.skip(message)
    return browser, driver


@pytest.fixture(scope='module')
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    path, driver_path = chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = path
    for flag in ('--headless=new', '--no-sandbox', '--disable-gpu', '--window-size=1280,860',
                 '--force-device-scale-factor=1', '--force-color-profile=srgb',
                 '--disable-dev-shm-usage'):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


def wait(driver, script, timeout=300):
    end = time.time() + timeout
    while time.time() < end:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f'timed out waiting for {script}')


def screenshot(driver):
    return np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert('RGB'))


@pytest.fixture(scope='module')
def official_page(browser, tmp_path_factory):
    lr = tmp_path_factory.mktemp('page') / 'lr.png'
    hr = Image.open(SAMPLE).convert('RGB')
    hr.resize((64, 64), Image.BICUBIC).save(lr)   # the sample as HR, its x2 bicubic as LR
    saved = tmp_path_factory.mktemp('saved')
    server, address = start(['--input', str(lr), '--hr', SAMPLE, '--bicubic',
                             '--precision', 'fp32', '--save-dir', str(saved), '--model',
                             shared_path('pretrained', 'edsr-baseline-liif.pth')])
    browser.get(f'http://{address}/')
    wait(browser, 'return window.viewer && window.viewer.level() !== null')
    browser.viewer_address, browser.viewer_saved = address, saved
    yield browser, str(lr)
    server.shutdown()


def test_the_page_shows_the_models_own_pixels_at_x8(official_page, tmp_path):
    driver, lr = official_page
    driver.execute_script('window.viewer.setView(40.3, 22.7, 8)')
    wait(driver, 'return window.viewer.ready()')
    shot = screenshot(driver)
    if os.environ.get('LIIF_VIEWER_SCREENSHOT'):  # the README's picture, PSNRs shown
        wait(driver, 'return window.viewer.psnr().every(v => v)')
        Image.fromarray(screenshot(driver)).save(os.environ['LIIF_VIEWER_SCREENSHOT'])
    out = tmp_path / 'x8.png'
    assert demo.main(['--input', lr, '--output', str(out), '--scale', '8', '--quiet',
                      '--model', shared_path('pretrained', 'edsr-baseline-liif.pth')]) == 0
    expected = np.asarray(Image.open(out)).astype(int)          # 512 x 512
    for pane in driver.execute_script('return window.viewer.offsets()')[:1]:
        left, top = round(pane['left']), round(pane['top'])
        width, height = int(pane['width']), int(pane['height'])
        x, y = pane['x'], pane['y']                   # screen offset of output pixel (0, 0)
        c0, r0 = max(0, -x), max(0, -y)
        c1, r1 = min(expected.shape[1], width - x), min(expected.shape[0], height - y)
        assert c1 - c0 > 200 and r1 - r0 > 200        # a large part of the output is compared
        shown = shot[top + y + r0:top + y + r1, left + x + c0:left + x + c1].astype(int)
        diff = np.abs(shown - expected[r0:r1, c0:c1])
        # Chromium shows an sRGB-untagged PNG as it is (--force-color-profile=srgb): at most
        # one level from the demo's file, from float rounding between batch sizes.
        assert diff.max() <= 1, diff.max()


def test_panes_stay_locked_after_a_drag(official_page):
    from selenium.webdriver.common.action_chains import ActionChains
    driver, _ = official_page
    driver.execute_script('window.viewer.setView(32, 32, 4)')
    wait(driver, 'return window.viewer.ready()')
    before = driver.execute_script('return window.viewer.view()')
    pane = driver.find_elements('css selector', '.viewport')[0]
    ActionChains(driver).move_to_element(pane).click_and_hold().move_by_offset(-80, -40) \
        .release().perform()
    wait(driver, 'return window.viewer.ready()')
    after = driver.execute_script('return window.viewer.view()')
    assert after['cx'] == pytest.approx(before['cx'] + 80 / 4, abs=0.01)
    assert after['cy'] == pytest.approx(before['cy'] + 40 / 4, abs=0.01)
    offsets = driver.execute_script('return window.viewer.offsets()')
    assert len(offsets) == 2 and len({(o['x'], o['y']) for o in offsets}) == 1
    shot = screenshot(driver).astype(int)
    # The LIIF pane and the bicubic one show the same place: close, not equal, pixels.
    a, b = offsets
    crop = lambda o: shot[round(o['top']) + 50:round(o['top']) + 250,  # noqa: E731
                          round(o['left']) + 50:round(o['left']) + 250]
    assert np.abs(crop(a) - crop(b)).mean() < 12


def test_the_psnr_shown_is_test_py_psnr_of_the_region(official_page):
    driver, lr = official_page
    driver.execute_script('window.viewer.setView(20, 30, 6)')
    wait(driver, 'return window.viewer.ready()')
    shown = wait(driver, 'const p = window.viewer.psnr(); return p.every(v => v) && p')
    hr = np.asarray(Image.open(SAMPLE).convert('RGB')).astype(np.float32) / 255
    region = shown[0]['region']
    c0, c1 = int(np.floor(region['x0'] * 2)), int(np.ceil(region['x1'] * 2))
    r0, r1 = int(np.floor(region['y0'] * 2)), int(np.ceil(region['y1'] * 2))
    model = load_decoder(shared_path('pretrained', 'edsr-baseline-liif.pth'),
                         torch.device('cpu'))
    inp = torch.from_numpy(np.asarray(Image.open(lr)).astype(np.float32) / 255)
    inp = inp.permute(2, 0, 1).unsqueeze(0)
    sr = torch.cat([b for _, b in render_bands(model, inp, (128, 128))])
    to_batch = lambda a: torch.as_tensor(a).permute(2, 0, 1).unsqueeze(0)  # noqa: E731
    expected = calc_psnr(to_batch(sr[r0:r1, c0:c1]), to_batch(hr[r0:r1, c0:c1])).item()
    assert shown[0]['value'] == pytest.approx(expected, abs=1e-3)
    assert shown[0]['value'] > shown[1]['value']   # LIIF beats bicubic on the region


def test_the_tile_cache_keeps_to_its_bound():
    from webviewer.tiles import TileCache
    cache = TileCache(max_bytes=250)
    for i in range(5):
        cache.put(('tile', i), bytes(100))
        assert cache.bytes <= 250
    assert cache.get(('tile', 0)) is None and cache.get(('tile', 4)) == bytes(100)
    cache.get(('tile', 3))          # used last: tile 4 is now the least recently used
    cache.put(('tile', 5), bytes(100))
    assert cache.get(('tile', 3)) is not None and cache.get(('tile', 4)) is None


def test_a_page_opened_after_another_zoomed_50_times_gets_model_tiles(official_page):
    """Each page load is a session of its own: a fresh page is not refused as stale because
    another page (here: this one, before a reload) went through 50 view generations."""
    driver, _ = official_page
    for i in range(50):
        z = 2 + 0.1 * i
        driver.execute_script(f'window.viewer.setView(32, 32, {z})')
        wait(driver, f'return window.viewer.level() && window.viewer.level().s === {z}', 30)
    driver.get(f'http://{driver.viewer_address}/')
    wait(driver, 'return window.viewer && window.viewer.level() !== null')
    driver.execute_script('window.viewer.setView(30, 30, 3)')
    wait(driver, 'return window.viewer.ready()', 120)  # every tile in: none answered 409


def test_a_page_of_another_site_cannot_save(official_page):
    """A page the user visits posts to the viewer (a 'simple' request, no preflight): the
    server refuses it (403) and writes nothing; the viewer's own page still saves."""
    driver, _ = official_page
    url = f'http://{driver.viewer_address}/api/save'
    body = json.dumps({'x0': 1, 'y0': 1, 'x1': 30, 'y1': 30, 'width': 16})
    driver.get('data:text/html,<title>elsewhere</title>')
    driver.execute_async_script(
        'const done = arguments[arguments.length - 1];'
        f'fetch({json.dumps(url)}, {{method: "POST", mode: "no-cors", body: {json.dumps(body)},'
        ' headers: {"Content-Type": "text/plain"}}).then(() => done(1), () => done(0));')
    time.sleep(0.5)
    assert os.listdir(driver.viewer_saved) == []
    driver.get(f'http://{driver.viewer_address}/')
    wait(driver, 'return window.viewer && window.viewer.level() !== null')
    status = driver.execute_async_script(
        'const done = arguments[arguments.length - 1];'
        'fetch("/api/info").then(r => r.json()).then(info => fetch("/api/save", '
        '{method: "POST", headers: {"Content-Type": "application/json", '
        '"X-Viewer-Token": info.token}, body: ' + json.dumps(body) + '})).then(r => done(r.status));')
    assert status == 200 and len(os.listdir(driver.viewer_saved)) == 2
