//! Browser tests: ui_pages (see webdriver.rs for check_page, resize, axe).
