"""Drives airlock's console in headless Chromium (Debian's chromium and chromium-driver, through Selenium), as a
reviewer or operator would: signs in at canaille (password, then authenticator code), then follows a script of steps
given as JSON on stdin, one object per line, and answers each with one JSON line on stdout.

    console_browser.py --console URL --screenshots DIR

Steps: {"sign_in": {"user", "password", "totp_secret"}}, {"open": "/console/..."}, {"fill": {"name", "value"}},
{"click": "button text"}, {"screenshot": "name"}, {"cookies": true}, {"value": "field name"}, {"quit": true}. Every
answer carries the page's `url`, `title` and visible `text` (and what the step asked for), or an `error`.
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
from selenium.webdriver.common.by import By
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
    # A code typed as the 30-second step turns over is refused by then: type the next one (twice at most).
    for _ in range(3):
        driver.find_element(By.NAME, "otp").send_keys(totp(totp_secret))
        leaving = driver.find_element(By.TAG_NAME, "html")
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit], form input[type=submit]").click()
        left(driver, leaving)
        if "/auth/otp" not in driver.current_url:
            break
    # Back at airlock's callback; a signed-in page then moves on to the console by itself (a meta refresh).
    WebDriverWait(driver, 30).until(lambda d: d.current_url.startswith(console) and loaded(d))
    if driver.find_elements(By.CSS_SELECTOR, "meta[http-equiv=refresh]"):
        WebDriverWait(driver, 30).until(lambda d: d.current_url == console + "/console" and loaded(d))


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
