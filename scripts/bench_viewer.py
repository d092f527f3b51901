"""How fast the viewer shows a model's pixels after a zoom (the README's viewer table).

Starts viewer.py's server on one model and opens its page in headless Chromium with a
1280x800 pane; for each precision, zooms to each scale at the image centre and reports the
time from the zoom settling until the first model tile shows and until the model's tiles
cover the whole pane (the page's own timing, performance.now()). Needs selenium, chromium and
chromedriver (bash scripts/setup.sh --tests).

Example:
  python scripts/bench_viewer.py --input ../shared/data/benchmark/Set5/HR/baby.png \\
      --scales 4 16 --precisions fp32 bf16
"""
import os
import shutil
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import viewer as viewer_script  # noqa: E402
from utils.cli import ArgumentParser, number  # noqa: E402

PANE = (1280, 800)


def main() -> None:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument('--input', default=viewer_script.DEFAULT_INPUT)
    parser.add_argument('--model', default=viewer_script.DEFAULT_MODEL)
    parser.add_argument('--scales', type=number(float, 0, above=True), nargs='+', default=[4, 16])
    parser.add_argument('--precisions', nargs='+', default=['fp32', 'bf16'])
    args = parser.parse_args()

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    browser, driver_path = shutil.which('chromium'), shutil.which('chromedriver')
    if not (browser and driver_path):
        sys.exit('error: chromium and chromedriver are needed (bash scripts/setup.sh --tests)')
    options.binary_location = browser
    for flag in ('--headless=new', '--no-sandbox', '--disable-gpu',
                 '--force-device-scale-factor=1', '--disable-dev-shm-usage'):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    print('| precision | zoom | first model tile (s) | whole 1280x800 pane (s) |')
    print('|---|---|---|---|')
    try:
        for precision in args.precisions:
            viewer_args = viewer_script.parse_args(['--input', args.input, '--model',
                                                    args.model, '--precision', precision,
                                                    '--port', '0'])
            server = viewer_script.serve(viewer_script.build(viewer_args), '127.0.0.1', 0)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            driver.get('http://%s:%d/' % server.server_address[:2])
            wait(driver, 'return window.viewer && window.viewer.level() !== null')
            # Size the window so that the pane's viewport is PANE.
            size = driver.execute_script('const r = document.querySelector(".viewport")'
                                         '.getBoundingClientRect(); return [r.width, r.height,'
                                         ' window.outerWidth, window.outerHeight]')
            driver.set_window_size(size[2] + PANE[0] - size[0], size[3] + PANE[1] - size[1])
            wait(driver, 'return window.viewer.ready()')
            info = driver.execute_script('return window.viewer.view()')
            for scale in args.scales:
                driver.execute_script(f'window.viewer.setView({info["cx"]}, {info["cy"]}, '
                                      f'{scale})')
                wait(driver, 'return window.viewer.ready()')
                timing = driver.execute_script('return window.viewer.timing()')
                print(f'| {precision} | x{scale:g} | {timing["first"] / 1000:.2f} | '
                      f'{timing["all"] / 1000:.2f} |', flush=True)
            server.shutdown()
    finally:
        driver.quit()


def wait(driver, script: str, timeout: float = 900):
    end = time.time() + timeout
    while time.time() < end:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(script)


if __name__ == '__main__':
    main()
