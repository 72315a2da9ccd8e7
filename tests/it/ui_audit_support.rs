//! Browser tests: ui_audit_support (see webdriver.rs for check_page, resize, axe).
