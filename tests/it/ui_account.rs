//! Browser tests: ui_account (see webdriver.rs for check_page, resize, axe).
