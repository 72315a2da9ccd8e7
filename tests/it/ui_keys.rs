//! Browser tests: ui_keys (see webdriver.rs for check_page, resize, axe).
