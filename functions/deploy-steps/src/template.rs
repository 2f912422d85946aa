//! Reading the template out of the pipeline's source artifact (a zip).

use std::io::{Read, Seek};

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("the source artifact is not a readable zip: {0}")]
    NotAZip(String),
    #[error("template {path} is not in the source artifact (it holds: {listing})")]
    NotFound { path: String, listing: String },
    #[error("template {path} is larger than {max} bytes")]
    TooLarge { path: String, max: u64 },
    #[error("template {path} is not UTF-8 text")]
    NotText { path: String },
}

/// CloudFormation accepts templates up to 1 MB through S3.
pub const MAX_TEMPLATE_BYTES: u64 = 1_048_576;

fn normalise(path: &str) -> String {
    path.trim_start_matches("./").trim_start_matches('/').to_owned()
}

/// Extracts `path` from the zip. Only that entry is read, whatever the artifact's size.
pub fn extract<R: Read + Seek>(zip: R, path: &str) -> Result<String, TemplateError> {
    let mut archive = zip::ZipArchive::new(zip).map_err(|e| TemplateError::NotAZip(e.to_string()))?;
    let wanted = normalise(path);
    let names: Vec<String> = (0..archive.len())
        .map(|i| {
            archive
                .name_for_index(i)
                .and_then(Result::ok)
                .map(std::borrow::Cow::into_owned)
                .unwrap_or_default()
        })
        .collect();
    let Some(index) = names.iter().position(|n| normalise(n) == wanted) else {
        let mut files: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| !n.is_empty() && !n.ends_with('/'))
            .collect();
        files.sort_unstable();
        let total = files.len();
        files.truncate(10);
        let mut listing = files.join(", ");
        if total > 10 {
            listing.push_str(&format!(", … {} more", total - 10));
        }
        if listing.is_empty() {
            listing = "nothing".into();
        }
        return Err(TemplateError::NotFound {
            path: path.to_owned(),
            listing,
        });
    };
    let entry = archive
        .by_index(index)
        .map_err(|e| TemplateError::NotAZip(e.to_string()))?;
    if entry.size() > MAX_TEMPLATE_BYTES {
        return Err(TemplateError::TooLarge {
            path: path.to_owned(),
            max: MAX_TEMPLATE_BYTES,
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
    entry
        .take(MAX_TEMPLATE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| TemplateError::NotAZip(e.to_string()))?;
    if bytes.len() as u64 > MAX_TEMPLATE_BYTES {
        return Err(TemplateError::TooLarge {
            path: path.to_owned(),
            max: MAX_TEMPLATE_BYTES,
        });
    }
    String::from_utf8(bytes).map_err(|_| TemplateError::NotText {
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Write};

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            let opts =
                zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
            for (name, body) in files {
                w.start_file(*name, opts).unwrap();
                w.write_all(body).unwrap();
            }
            w.finish().unwrap();
        }
        buf.into_inner()
    }

    #[test]
    fn finds_the_template() {
        let z = zip_of(&[("README.md", b"hi"), ("infra/app.yaml", b"Resources: {}\n")]);
        assert_eq!(
            extract(Cursor::new(&z), "infra/app.yaml").unwrap(),
            "Resources: {}\n"
        );
        assert_eq!(
            extract(Cursor::new(&z), "./infra/app.yaml").unwrap(),
            "Resources: {}\n"
        );
    }

    #[test]
    fn missing_template_lists_what_is_there() {
        let z = zip_of(&[("a.yaml", b"x"), ("b/c.yaml", b"y")]);
        let err = extract(Cursor::new(&z), "infra/app.yaml")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "template infra/app.yaml is not in the source artifact (it holds: a.yaml, b/c.yaml)"
        );
    }

    #[test]
    fn not_a_zip() {
        assert!(matches!(
            extract(Cursor::new(b"plain text"), "x"),
            Err(TemplateError::NotAZip(_))
        ));
    }

    #[test]
    fn binary_template() {
        let z = zip_of(&[("t.yaml", &[0xff, 0xfe, 0x00])]);
        assert!(matches!(
            extract(Cursor::new(&z), "t.yaml"),
            Err(TemplateError::NotText { .. })
        ));
    }
}
