//! The page's two languages: choosing one from Accept-Language, and every
//! text in both.

use kanki_indicators::Category;

pub use kanki_html::Lang;

/// The warning page's texts of a language.
pub trait Texts {
    /// The texts in this language.
    fn text(self) -> &'static Text;
}

impl Texts for Lang {
    fn text(self) -> &'static Text {
        match self {
            Lang::Ja => &JA,
            Lang::En => &EN,
        }
    }
}

/// Every text of the pages. `{name}`, `{category}`, `{minutes}`, `{id}`
/// are filled in when the page is written.
pub struct Text {
    pub switch_label: &'static str,
    pub warning_title: &'static str,
    pub warning_heading: &'static str,
    pub warning_lead: &'static str,
    pub why_heading: &'static str,
    pub blocked_site: &'static str,
    pub and_subdomains: &'static str,
    pub category: &'static str,
    pub sources: &'static str,
    pub first_seen: &'static str,
    pub evidence: &'static str,
    pub no_evidence: &'static str,
    pub evidence_more: &'static str,
    pub indicator: &'static str,
    pub withheld: &'static str,
    pub go_back: &'static str,
    pub proceed: &'static str,
    pub proceed_note: &'static str,
    pub report_heading: &'static str,
    pub report_lead: &'static str,
    pub report_note: &'static str,
    pub report_contact: &'static str,
    pub report_send: &'static str,
    pub report_thanks_title: &'static str,
    pub report_thanks: &'static str,
    pub report_limited: &'static str,
    pub pass_title: &'static str,
    pub pass_body: &'static str,
    pub retry_now: &'static str,
    pub not_listed_title: &'static str,
    pub not_listed_body: &'static str,
    pub garden_heading: &'static str,
    pub garden_lead: &'static str,
    pub garden_default_notice: &'static str,
    pub garden_notice_heading: &'static str,
    pub garden_since: &'static str,
    pub garden_how_heading: &'static str,
    pub garden_how: &'static str,
    pub garden_countermeasure: &'static str,
    pub garden_allowed: &'static str,
    pub garden_reference: &'static str,
    pub garden_cleaned_note: &'static str,
    pub garden_cleaned_send: &'static str,
    pub garden_requested: &'static str,
    pub garden_also_listed: &'static str,
    pub bad_form_title: &'static str,
    pub bad_form: &'static str,
    pub back_to_page: &'static str,
    pub footer: &'static str,
    pub categories: [&'static str; 8],
}

impl Text {
    pub fn category_name(&self, c: Category) -> &'static str {
        let i = Category::ALL.iter().position(|x| *x == c).unwrap_or(7);
        self.categories[i.min(7)]
    }
}

pub static JA: Text = Text {
    switch_label: "English",
    warning_title: "警告：危険なサイトへの接続を止めました",
    warning_heading: "この先のサイトは危険です",
    warning_lead: "接続しようとしたサイト {name} は「{category}」として報告されているため、接続を止めました。開くと、パソコンやスマートフォンがマルウェア（ウイルス）に感染するおそれがあります。",
    why_heading: "止めた理由",
    blocked_site: "止めたサイト",
    and_subdomains: "（そのサブドメインを含む）",
    category: "分類",
    sources: "情報源",
    first_seen: "初めて確認された日時",
    evidence: "根拠",
    no_evidence: "情報源からの報告のみ",
    evidence_more: "ほか {n} 件",
    indicator: "指標番号",
    withheld: "詳しい根拠は共有の制限（TLP:{tlp}）によりここには表示できません。",
    go_back: "前のページに戻る",
    proceed: "危険を理解したうえで、今回だけ進む",
    proceed_note: "進むと、この端末から {name} へは {minutes} 分間、警告なしで接続できます。",
    report_heading: "誤検知を報告する",
    report_lead: "このサイトが危険ではないとお考えの場合は、お知らせください。担当者が確認します。",
    report_note: "理由（必須）",
    report_contact: "連絡先（任意：メールアドレスなど）",
    report_send: "報告を送る",
    report_thanks_title: "報告を受け付けました",
    report_thanks: "ご報告ありがとうございます（受付番号 {id}）。担当者が確認し、誤りであれば一覧から外します。",
    report_limited: "この端末からの報告が多すぎるため、しばらくしてからもう一度お試しください。",
    pass_title: "通過を許可しました",
    pass_body: "この端末から {name} への接続を {minutes} 分間許可しました。ブラウザーがまだ以前の接続先を覚えているため、このページが表示されています。1 分ほどで自動的に移動します。",
    retry_now: "もう一度開く",
    not_listed_title: "注意喚起サービス",
    not_listed_body: "{name} への接続は現在止められていません。ブラウザーが以前の接続先を覚えている場合、1 分ほどで正しく表示されます。",
    garden_heading: "お使いの回線からの通信を制限しています",
    garden_lead: "お使いの回線につながっている機器が、マルウェア（ウイルス）に感染しているおそれがあります。被害を広げないよう、対策のためのサイトを除き、インターネットへの接続を一時的に制限しています。",
    garden_default_notice: "お使いの機器が、マルウェアに感染した機器に特有の通信をしていることを確認しました。",
    garden_notice_heading: "お知らせ",
    garden_since: "制限の開始",
    garden_how_heading: "制限を解除するには",
    garden_how: "対策サイトの手順に従って機器のマルウェアを駆除し、下のボタンでお知らせください。お知らせ番号があればすぐに、なければ担当者が確認したうえで制限を解除します。",
    garden_countermeasure: "対策サイトを開く",
    garden_allowed: "制限中も次のサイトには接続できます：",
    garden_reference: "お知らせ番号：",
    garden_cleaned_note: "行った対策（任意）",
    garden_cleaned_send: "駆除が終わりました",
    garden_requested: "{at} に駆除完了のお知らせを受け付けました。担当者の確認をお待ちください。",
    garden_also_listed: "なお、開こうとしたサイト {name} は「{category}」として報告されています。",
    bad_form_title: "送信できませんでした",
    bad_form: "ページの有効期限が切れたか、内容が正しくありません。ページを開き直してからもう一度お試しください。",
    back_to_page: "警告ページに戻る",
    footer: "この警告は、ご契約のプロバイダーが、お客様の同意にもとづいて提供している注意喚起サービスによるものです。",
    categories: [
        "マルウェア配布サイト",
        "攻撃サイト",
        "攻撃サイトへの誘導サイト",
        "改ざんされた入口サイト",
        "ボットの指令サーバー（C&C）",
        "フィッシングサイト",
        "詐欺サイト",
        "不正なサイト",
    ],
};

pub static EN: Text = Text {
    switch_label: "日本語",
    warning_title: "Warning: a dangerous site was blocked",
    warning_heading: "The site ahead is dangerous",
    warning_lead: "You tried to open {name}. It has been reported as a {category}, so the connection was stopped. Opening it could infect your computer or phone with malware.",
    why_heading: "Why it was blocked",
    blocked_site: "Blocked site",
    and_subdomains: " (and its subdomains)",
    category: "Category",
    sources: "Reported by",
    first_seen: "First seen",
    evidence: "Evidence",
    no_evidence: "the sources' reports only",
    evidence_more: "and {n} more",
    indicator: "Indicator",
    withheld: "The detailed evidence is shared under TLP:{tlp} and cannot be shown here.",
    go_back: "Go back",
    proceed: "I understand the risk: proceed this once",
    proceed_note: "If you proceed, this device can reach {name} without a warning for {minutes} minutes.",
    report_heading: "Report a false positive",
    report_lead: "If you believe this site is safe, tell us. An operator will check it.",
    report_note: "Why (required)",
    report_contact: "Contact (optional: an e-mail address, for example)",
    report_send: "Send the report",
    report_thanks_title: "Report received",
    report_thanks: "Thank you for your report (number {id}). An operator will check it and take the site off the list if it was wrong.",
    report_limited: "Too many reports from this device; please try again later.",
    pass_title: "Passage allowed",
    pass_body: "This device may reach {name} for {minutes} minutes. Your browser still remembers the old address, which is why you see this page; it will move on by itself within a minute or so.",
    retry_now: "Try again now",
    not_listed_title: "Malware warning service",
    not_listed_body: "{name} is not blocked now. If your browser still remembers the old address, the site will open correctly within a minute or so.",
    garden_heading: "Internet access from your line is restricted",
    garden_lead: "A device on your line appears to be infected with malware. To keep the damage from spreading, access to the Internet is restricted for now, except to the sites that help you clean up.",
    garden_default_notice: "We saw a device on your line communicate the way machines infected with malware do.",
    garden_notice_heading: "Notice",
    garden_since: "Restricted since",
    garden_how_heading: "How to lift the restriction",
    garden_how: "Clean the device by following the countermeasure site, then tell us with the button below. With a notice reference the restriction is lifted at once; without one, an operator checks and lifts it.",
    garden_countermeasure: "Open the countermeasure site",
    garden_allowed: "These sites stay reachable meanwhile:",
    garden_reference: "Notice reference:",
    garden_cleaned_note: "What you did (optional)",
    garden_cleaned_send: "I have cleaned my machine",
    garden_requested: "We received your message that the machine is clean at {at}. Please wait for an operator to check.",
    garden_also_listed: "The site you tried to open, {name}, has also been reported as a {category}.",
    bad_form_title: "The form could not be sent",
    bad_form: "The page has expired or the form was not valid. Please open the page again and retry.",
    back_to_page: "Back to the warning",
    footer: "This warning comes from the malware warning service your provider runs with your consent.",
    categories: [
        "malware distribution site",
        "exploit site",
        "redirector to an exploit site",
        "compromised entrance site",
        "botnet command-and-control server",
        "phishing site",
        "scam site",
        "malicious site",
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_category_has_a_name_in_both() {
        assert_eq!(Category::ALL.len(), JA.categories.len());
        assert_eq!(
            JA.category_name(Category::C2),
            "ボットの指令サーバー（C&C）"
        );
        assert_eq!(EN.category_name(Category::Other), "malicious site");
    }
}
