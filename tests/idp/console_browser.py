"""Drives airlock's console in headless Chromium (Debian's chromium and chromium-driver, through Selenium), as a
reviewer or operator would: signs in at canaille (password, then authenticator code), then follows a script of steps
given as JSON on stdin, one object per line, and answers each with one JSON line on stdout.

    console_browser.py --console URL --screenshots DIR

Steps: {"sign_in": {"user", "password", "totp_secret"}}, {"open": "/console/..."}, {"fill": {"name", "value"}}
(typed; with "set": true the value is set as a paste would, for characters a keyboard cannot type), {"click": "button
text"}, {"keyboard": {"fill": {"name", "value"}, "press": "button text"}} (the keyboard alone: Tab to the field, type,
Tab to the button, Enter), {"check": true} (what the page runs and shows: scripts, handlers, unlabelled controls,
controls Tab cannot reach, and whether it needs sideways scrolling at 200% zoom), {"screenshot": "name"},
{"cookies": true}, {"value": "field name"}, {"quit": true}. Every answer carries the page's `url`, `title` and visible
`text` (and what the step asked for), or an `error`.
"""

import argparse
import json
import os
import signal
import sys

import hashlib
import hmac
import struct
import time
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait


def totp(secret):
    """The current 6-digit code of canaille's TOTP, which keys HMAC-SHA1 with the secret's text itself (RFC 6238)."""
    counter = struct.pack(">Q", int(time.time()) // 30)
    digest = hmac.new(secret.encode("utf-8"), counter, hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1600"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def page(driver):
    return {"url": driver.current_url, "title": driver.title, "text": driver.find_element(By.TAG_NAME, "body").text}


def loaded(driver):
    return driver.execute_script("return document.readyState") == "complete"


def left(driver, page):
    """Waits until `page` (the html element of the page a click leaves) is gone and the next one is loaded.
    Chromium sometimes answers a gone element with "does not belong to the document" instead of a stale reference."""

    def gone(_):
        try:
            page.tag_name
            return False
        except Exception:
            return True

    WebDriverWait(driver, 30).until(gone)
    WebDriverWait(driver, 30).until(loaded)


def sign_in(driver, console, user, password, totp_secret):
    driver.get(console + "/console/sign-in")
    driver.find_element(By.NAME, "login").send_keys(user)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit], form input[type=submit]").click()
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit], form input[type=submit]").click()
    # A code typed as the 30-second step turns over is refused by then: type the next one (twice at most). canaille
    # shows the refused code again in the field, so it is cleared first (typing after it made every retry a
    # 12-digit code, refused too: the test failed whenever a sign-in met the turn of a step).
    for _ in range(3):
        field = driver.find_element(By.NAME, "otp")
        field.clear()
        field.send_keys(totp(totp_secret))
        leaving = driver.find_element(By.TAG_NAME, "html")
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit], form input[type=submit]").click()
        left(driver, leaving)
        if "/auth/otp" not in driver.current_url:
            break
    # Back at airlock's callback; a signed-in page then moves on to the console by itself (a meta refresh).
    WebDriverWait(driver, 30).until(lambda d: d.current_url.startswith(console) and loaded(d))
    if driver.find_elements(By.CSS_SELECTOR, "meta[http-equiv=refresh]"):
        WebDriverWait(driver, 30).until(lambda d: d.current_url == console + "/console" and loaded(d))


CONTROLS = "input:not([type=hidden]), select, textarea, button, a[href]"

# Every control without a name a screen reader can say: a form control needs a <label> (or aria-label), a button or
# link its text.
UNLABELLED = """
return [...document.querySelectorAll(arguments[0])].filter(c => {
  if (c.tagName === 'BUTTON' || c.tagName === 'A') return !c.textContent.trim() && !c.getAttribute('aria-label');
  return !(c.labels && c.labels.length) && !c.getAttribute('aria-label') && !c.getAttribute('aria-labelledby');
}).map(c => c.outerHTML.slice(0, 160));
"""

# What of the page could run: script elements, inline event handlers, javascript: URLs, embedded objects.
ACTIVE = """
const all = [...document.querySelectorAll('*')];
return {
  scripts: document.querySelectorAll('script, iframe, object, embed, img').length,
  handlers: all.filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).map(e => e.tagName),
  javascript_urls: all.filter(e => /^\\s*javascript:/i.test(e.getAttribute('href') || e.getAttribute('src') || '')).length,
};
"""


def focus_key(element):
    return element.get_attribute("outerHTML")[:300] + "|" + str(element.location)


def tab_cycle(driver, limit=300):
    """The controls Tab visits from the top of the page, in order, until focus comes round again."""
    driver.execute_script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0);")
    seen, order = set(), []
    for _ in range(limit):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        element = driver.switch_to.active_element
        if element.tag_name == "body":
            continue
        key = focus_key(element)
        if key in seen:
            break
        seen.add(key)
        order.append(element)
    return order


def check(driver):
    answer = {"unlabelled": driver.execute_script(UNLABELLED, CONTROLS)}
    answer.update(driver.execute_script(ACTIVE))
    reached = {focus_key(element) for element in tab_cycle(driver)}
    controls = [c for c in driver.find_elements(By.CSS_SELECTOR, CONTROLS) if c.is_displayed()]
    answer["unreachable"] = [c.get_attribute("outerHTML")[:160] for c in controls if focus_key(c) not in reached]
    # 200% zoom: the same window, half as many CSS pixels across, each drawn twice as large.
    size = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": size[0] // 2, "height": size[1] // 2, "deviceScaleFactor": 2, "mobile": False})
    try:
        answer["overflow_at_200"] = driver.execute_script(
            "const d = document.documentElement; return d.scrollWidth > d.clientWidth"
            " ? [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > d.clientWidth)"
            ".slice(-3).map(e => e.outerHTML.slice(0, 160)) : [];")
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    return answer


def keyboard(driver, fill, press):
    """Fills a field and presses a button with the keyboard alone, as someone who cannot use a mouse would."""
    driver.execute_script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0);")
    for _ in range(300):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        if driver.switch_to.active_element.get_attribute("name") == fill["name"]:
            break
    else:
        raise Exception(f"Tab never reaches the field {fill['name']}")
    ActionChains(driver).send_keys(fill["value"]).perform()
    for _ in range(50):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        element = driver.switch_to.active_element
        if element.tag_name == "button" and element.text.strip() == press:
            leaving = driver.find_element(By.TAG_NAME, "html")
            ActionChains(driver).send_keys(Keys.ENTER).perform()
            left(driver, leaving)
            return
    raise Exception(f"Tab never reaches the button {press}")


def main():
    # A SIGTERM ends the script through its `finally`, which quits Chromium.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    parser = argparse.ArgumentParser()
    parser.add_argument("--console", required=True)
    parser.add_argument("--screenshots", required=True)
    args = parser.parse_args()
    os.makedirs(args.screenshots, exist_ok=True)
    driver = browser()
    driver.implicitly_wait(5)
    try:
        for line in sys.stdin:
            step = json.loads(line)
            answer = {}
            try:
                if "sign_in" in step:
                    sign_in(driver, args.console, **step["sign_in"])
                elif "open" in step:
                    driver.get(args.console + step["open"])
                elif "fill" in step:
                    field = driver.find_element(By.NAME, step["fill"]["name"])
                    field.clear()
                    if step["fill"].get("set"):
                        driver.execute_script("arguments[0].value = arguments[1]", field, step["fill"]["value"])
                    else:
                        field.send_keys(step["fill"]["value"])
                elif "click" in step:
                    wanted = step["click"]
                    buttons = [b for b in driver.find_elements(By.TAG_NAME, "button") if b.text.strip() == wanted]
                    links = [a for a in driver.find_elements(By.TAG_NAME, "a") if a.text.strip() == wanted]
                    # Every button and link of the console navigates: wait until the page it leaves is gone, so that
                    # the answer is the new page, not the old one still being replaced.
                    leaving = driver.find_element(By.TAG_NAME, "html")
                    (buttons or links)[0].click()
                    left(driver, leaving)
                elif "keyboard" in step:
                    keyboard(driver, step["keyboard"]["fill"], step["keyboard"]["press"])
                elif "check" in step:
                    answer["check"] = check(driver)
                elif "screenshot" in step:
                    path = os.path.join(args.screenshots, step["screenshot"] + ".png")
                    driver.save_screenshot(path)
                    answer["screenshot"] = path
                elif "cookies" in step:
                    answer["cookies"] = driver.get_cookies()
                elif "value" in step:
                    answer["value"] = driver.find_element(By.NAME, step["value"]).get_attribute("value")
                elif "quit" in step:
                    break
                answer.update(page(driver))
            except Exception as error:  # the test reads what went wrong, and may go on
                answer["error"] = f"{type(error).__name__}: {error}"
                try:
                    answer.update(page(driver))
                except Exception:
                    pass
            print(json.dumps(answer), flush=True)
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
