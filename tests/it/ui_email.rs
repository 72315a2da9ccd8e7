//! Browser tests: ui_email (see webdriver.rs for check_page, resize, axe).
//! The one-click unsubscribe pages, the security page's Email card, and an
//! email's HTML itself, at a laptop's and a phone's size: each fits and
//! passes axe; opening the link only asks, the button unsubscribes.

use crate::email::sink::Sink;
use crate::email::{delivered, only_mail_to, unsubscribe_url};
use crate::helpers::{Backend, OWNER_EMAIL, OWNER_PASSWORD, spawn_app_with};
use crate::key_privilege::expiring;
use crate::webdriver::{Browser, LAPTOP, PHONE};

const SIZES: [((u32, u32), &str); 2] = [(PHONE, "phone"), (LAPTOP, "laptop")];

async fn check_both(browser: &Browser, name: &str) {
    for (size, label) in SIZES {
        browser.resize(size).await;
        browser.check_page(&format!("email-{name}-{label}")).await;
    }
}

#[tokio::test]
async fn a_reminder_reads_well_and_its_unsubscribe_link_asks_before_it_acts() {
    let Some(browser) = Browser::start().await else { return };
    let sink = Sink::start().await;
    let app = spawn_app_with(Backend::Sqlite, &[("LATCHKEY_SMTP_URL", &sink.url())]).await.unwrap();
    app.owner_session().await;
    expiring(&app, "Billing", 6 * 86_400).await;
    app.run_reminders().await;
    delivered(&app).await;
    let mail = only_mail_to(&sink, OWNER_EMAIL);

    // The email's HTML, as a mail client shows it.
    let file = app.data_dir.join("reminder.html");
    std::fs::write(&file, mail.html()).unwrap();
    browser.goto(&format!("file://{}", file.display())).await;
    browser.wait_for_title("API key Billing expires in 6 days").await;
    check_both(&browser, "reminder").await;

    browser.goto(&unsubscribe_url(&mail)).await;
    browser.wait_for("#unsubscribe").await;
    check_both(&browser, "unsubscribe-ask").await;
    browser.click("#unsubscribe").await;
    browser.wait_for("#unsubscribed").await;
    check_both(&browser, "unsubscribe-done").await;

    browser.goto(&app.url("/login")).await;
    browser.sign_in(OWNER_EMAIL, OWNER_PASSWORD, "Team · Latchkey").await;
    browser.goto(&app.url("/settings/security#email-card")).await;
    browser.wait_for_title("Security · Latchkey").await;
    assert_eq!(browser.script("return document.querySelector('#email-1').checked").await, serde_json::json!(false));
    browser.click("#email-1").await;
    browser.click("#email-card button[type=submit]").await;
    browser.wait_for_text(".notice", "You will get these reminders again.").await;
    assert_eq!(browser.script("return document.querySelector('#email-1').checked").await, serde_json::json!(true));
    check_both(&browser, "security-card").await;
    browser.quit().await;
}
