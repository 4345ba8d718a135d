"""How the browser tests read and drive the dashboard, which redraws itself while they look at it.

At every poll (and every 15 s for the alert cards) the page replaces the HTML of its alert cards,
station table, summary chips and staff panel, so an element found in one WebDriver call may be
gone by the next (StaleElementReferenceException). The one way to look at such content:

- read it in one step: ``text``, ``texts``, ``read`` and ``displayed`` each run one script that
  finds the elements and returns what they say, so they see one rendering of the page;
- or wait with ``wait`` for a condition that finds its elements again at each poll (a node
  redrawn between its finding and its reading is looked at again on the next poll);
- click with ``click``, which finds the element again until one takes the click.

Never a sleep, and never a retry around an assertion: the condition itself must become true.
"""

from __future__ import annotations

FIRST_TEXT = "var e = document.querySelector(arguments[0]); return e ? e.innerText : null;"
ALL_READ = (
    "var names = arguments[1]; return Array.from(document.querySelectorAll(arguments[0])).map(function (e) {"
    " var row = {text: e.innerText}; names.forEach(function (name) { row[name] = e.getAttribute(name); });"
    " return row; });")
# The element is there and drawn: not display:none (its own or an ancestor's, a closed <details>),
# not visibility:hidden, not transparent (as Selenium's is_displayed judges).
DISPLAYED = ("var e = document.querySelector(arguments[0]);"
             " return !!e && e.checkVisibility({opacityProperty: true, visibilityProperty: true});")


def wait(driver, condition, timeout=10.0, message=""):
    """Poll ``condition(driver)`` until it is truthy and return it; it finds its elements anew each poll."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,)
                         ).until(lambda d: condition(d), message)


def fold(value: str) -> str:
    """Whitespace folded to single spaces (innerText keeps the line breaks and tabs of the layout)."""
    return " ".join(value.split())


def text(driver, selector) -> str | None:
    """The text of the first match, whitespace folded, or None when nothing matches; in one step."""
    found = driver.execute_script(FIRST_TEXT, selector)
    return None if found is None else fold(found)


def texts(driver, selector) -> list[str]:
    """The texts of every match, whitespace folded; in one step."""
    return [row["text"] for row in read(driver, selector)]


def read(driver, selector, *attributes: str) -> list[dict]:
    """``{"text": …, attribute: value …}`` of every match, in page order; in one step."""
    rows = driver.execute_script(ALL_READ, selector, list(attributes))
    return [{**row, "text": fold(row["text"])} for row in rows]


def displayed(driver, selector) -> bool:
    """Whether the first match is there and drawn; in one step."""
    return driver.execute_script(DISPLAYED, selector)


def click(driver, selector):
    """Click the first match once it shows; found again when a redraw replaced it before the click."""
    def clicked(d):
        found = d.find_elements("css selector", selector)
        if found:
            found[0].click()
        return bool(found)

    wait(driver, clicked, message=f"could not click {selector}")


def open_page(driver, live, query=""):
    """Load the dashboard and wait until its first data is on screen."""
    driver.get(f"{live.url}/{query}")
    wait(driver, lambda d: d.execute_script("return !!(window.EWS && window.EWS.state.loaded)"),
         message="the page never loaded its data")


def marker_levels(driver) -> dict:
    """``{station id: [level, fill colour]}`` of every map marker, in one step."""
    return driver.execute_script(
        "var out = {}; document.querySelectorAll('path.ews-marker').forEach(function (p) {"
        " out[p.getAttribute('data-station')] = [p.getAttribute('data-level'), p.getAttribute('fill')]; });"
        " return out;")


def token_for(services, role: str, name: str) -> str:
    """A new API token of ``role`` named ``name``."""
    from service.tokens import create_token

    return create_token(services.engine, role, name)[1]


def page_errors(driver) -> list[str]:
    """Console errors other than failed network loads (tiles without internet, 404 of an absent API)."""
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and e.get("source") != "network"]
