//! Plain tables rendered two ways: aligned text for the terminal and
//! GitHub-flavoured Markdown for bench.md, from the same rows, so the two
//! never disagree.

/// A titled table of strings; the first column is left-aligned, the others
/// (numbers) right-aligned.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Table {
    pub title: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Notes printed under the table.
    pub notes: Vec<String>,
}

impl Table {
    pub(crate) fn new(title: &str, headers: &[&str]) -> Self {
        Table {
            title: title.to_owned(),
            headers: headers.iter().map(|h| h.to_string()).collect(),
            ..Table::default()
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    fn widths(&self) -> Vec<usize> {
        let mut w: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if i < w.len() {
                    w[i] = w[i].max(cell.chars().count());
                } else {
                    w.push(cell.chars().count());
                }
            }
        }
        w
    }

    /// Aligned text with a title line.
    pub(crate) fn text(&self) -> String {
        let widths = self.widths();
        let line = |cells: &[String]| {
            let parts: Vec<String> = widths
                .iter()
                .enumerate()
                .map(|(i, &w)| {
                    let c = cells.get(i).map(String::as_str).unwrap_or("");
                    if i == 0 {
                        format!("{c:<w$}")
                    } else {
                        format!("{c:>w$}")
                    }
                })
                .collect();
            parts.join("  ").trim_end().to_owned()
        };
        let mut out = format!("== {}\n", self.title);
        out += &line(&self.headers);
        out.push('\n');
        let total: usize = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
        out += &"-".repeat(total);
        out.push('\n');
        for row in &self.rows {
            out += &line(row);
            out.push('\n');
        }
        for n in &self.notes {
            out += &format!("  {n}\n");
        }
        out
    }

    /// A Markdown section: `### title`, the table, the notes.
    pub(crate) fn markdown(&self) -> String {
        let esc = |c: &str| c.replace('|', "\\|");
        let mut out = format!("### {}\n\n", self.title);
        out += &format!(
            "| {} |\n",
            self.headers
                .iter()
                .map(|h| esc(h))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let align: Vec<&str> = (0..self.headers.len())
            .map(|i| if i == 0 { ":---" } else { "---:" })
            .collect();
        out += &format!("| {} |\n", align.join(" | "));
        for row in &self.rows {
            out += &format!(
                "| {} |\n",
                row.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | ")
            );
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                out += &format!("- {n}\n");
            }
        }
        out.push('\n');
        out
    }
}

/// A number with `decimals` places; "-" for a missing or non-finite one.
pub(crate) fn num(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "-".into(),
    }
}

/// A ratio as a percentage ("96%"); "-" for a missing one.
pub(crate) fn pct(r: Option<f64>) -> String {
    match r {
        Some(x) if x.is_finite() => format!("{:.0}%", x * 100.0),
        _ => "-".into(),
    }
}

/// A value with about three significant digits: 1234, 123, 12.3, 1.23.
pub(crate) fn sig(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "-".into()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new("Demo", &["name", "value"]);
        t.row(vec!["a".into(), "1.5".into()]);
        t.row(vec!["longer|x".into(), "12345".into()]);
        t.note("a note");
        t
    }

    #[test]
    fn text_is_aligned() {
        let text = sample().text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "== Demo");
        assert_eq!(lines[1], "name      value");
        assert_eq!(lines[2], "---------------");
        assert_eq!(lines[3], "a           1.5");
        assert_eq!(lines[4], "longer|x  12345");
        assert_eq!(lines[5], "  a note");
    }

    #[test]
    fn markdown_escapes_pipes_and_aligns_numbers() {
        let md = sample().markdown();
        assert!(md.starts_with("### Demo\n\n| name | value |\n| :--- | ---: |\n"));
        assert!(md.contains("| longer\\|x | 12345 |\n"), "{md}");
        assert!(md.contains("\n- a note\n"), "{md}");
    }

    #[test]
    fn number_formats() {
        assert_eq!(num(Some(1.234), 1), "1.2");
        assert_eq!(num(None, 1), "-");
        assert_eq!(num(Some(f64::NAN), 1), "-");
        assert_eq!(sig(1234.4), "1234");
        assert_eq!(sig(12.34), "12.3");
        assert_eq!(sig(1.234), "1.23");
        assert_eq!(pct(Some(0.956)), "96%");
        assert_eq!(pct(None), "-");
    }
}
