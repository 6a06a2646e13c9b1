//! The rules of a stream's `mirror` and `sources`, checked as nats-server checks them, with
//! its error codes: [`check`] on the configuration alone, [`check_against`] with the other
//! streams of the account (message sizes, `mirror_direct`, cycles), [`check_update`] on an
//! update.

use super::{StreamSource, SubjectTransform};
use crate::jetstream::config::{name_problem, StreamConfig};
use crate::jetstream::errors::ApiError;
use crate::protocol::subject;

fn err(err_code: u32, text: &str) -> ApiError {
    ApiError::new(400, err_code, text)
}

/// Checks the mirror and sources of `cfg` on their own (an empty `sources` is none).
pub(crate) fn check(cfg: &mut StreamConfig) -> Result<(), ApiError> {
    if cfg.sources.as_ref().is_some_and(Vec::is_empty) {
        cfg.sources = None;
    }
    if let Some(m) = &cfg.mirror {
        check_mirror(cfg, m)?;
    }
    if let Some(sources) = &cfg.sources {
        if cfg.allow_msg_schedules {
            return Err(err(10187, "stream source can not also schedule messages"));
        }
        if cfg.allow_msg_counter {
            return Err(ApiError::not_implemented(
                "counters aggregated from sources",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for src in sources {
            if name_problem(&src.name).is_some() {
                return Err(err(10141, "sourced stream name is invalid"));
            }
            if !seen.insert(src.index_name()) {
                return Err(err(10140, "duplicate source configuration detected"));
            }
            if !src.filter_subject.is_empty() && !src.subject_transforms.is_empty() {
                return Err(err(
                    10144,
                    "source with multiple subject transforms cannot also have a single subject filter",
                ));
            }
            check_transforms(&src.subject_transforms, "source", (10145, 10146))?;
            let ts = &src.subject_transforms;
            for (i, a) in ts.iter().enumerate() {
                if ts
                    .iter()
                    .enumerate()
                    .any(|(j, b)| i != j && subject::covers(&b.src, &a.src))
                {
                    return Err(err(10147, "source filters can not overlap"));
                }
            }
            check_common(src)?;
        }
    }
    Ok(())
}

fn check_mirror(cfg: &StreamConfig, m: &StreamSource) -> Result<(), ApiError> {
    let refusal = if cfg.first_seq > 0 {
        Some((
            10143,
            "stream mirrors can not have first sequence configured",
        ))
    } else if !cfg.subjects.is_empty() {
        Some((10034, "stream mirrors can not contain subjects"))
    } else if cfg.sources.is_some() {
        Some((10031, "stream mirrors can not also contain other sources"))
    } else if cfg.allow_msg_counter {
        Some((10173, "stream mirrors can not also calculate counters"))
    } else if cfg.allow_atomic {
        Some((10198, "stream mirrors can not also use atomic publishing"))
    } else if cfg.allow_batched {
        Some((10209, "stream mirrors can not also use batch publishing"))
    } else if cfg.allow_msg_schedules {
        Some((10186, "stream mirrors can not also schedule messages"))
    } else {
        None
    };
    if let Some((code, text)) = refusal {
        return Err(err(code, text));
    }
    if !m.filter_subject.is_empty() && !m.subject_transforms.is_empty() {
        return Err(err(
            10150,
            "mirror with multiple subject transforms cannot also have a single subject filter",
        ));
    }
    if cfg.subject_delete_marker_ttl > 0 {
        return Err(ApiError::invalid_config(
            "subject delete markers forbidden on mirrors",
        ));
    }
    check_transforms(&m.subject_transforms, "mirror", (10151, 10154))?;
    let ts = &m.subject_transforms;
    for (i, a) in ts.iter().enumerate() {
        if ts
            .iter()
            .enumerate()
            .any(|(j, b)| i != j && subject::overlaps(&a.src, &b.src))
        {
            return Err(err(10152, "mirror subject filters can not overlap"));
        }
    }
    if m.external.is_none() && name_problem(&m.name).is_some() {
        return Err(err(10142, "mirrored stream name is invalid"));
    }
    check_common(m)
}

/// Each transform's source is a valid subject and its mapping valid.
fn check_transforms(
    ts: &[SubjectTransform],
    kind: &str,
    (bad_src, bad_dest): (u32, u32),
) -> Result<(), ApiError> {
    for t in ts {
        if !t.src.is_empty() && !subject::is_valid_subject(t.src.as_bytes()) {
            let text = format!("{kind} transform source: invalid subject {}", t.src);
            return Err(err(bad_src, &text));
        }
        let src = if t.src.is_empty() { ">" } else { &t.src };
        if let Err(e) = crate::protocol::transform::validate(src, &t.dest) {
            return Err(err(bad_dest, &format!("{kind} transform: {e}")));
        }
    }
    Ok(())
}

/// What mirrors and sources share: no durable consumer (not implemented), a start time that
/// parses, valid external prefixes.
fn check_common(src: &StreamSource) -> Result<(), ApiError> {
    if src.consumer.is_some() {
        return Err(ApiError::not_implemented(
            "sourcing through a durable consumer",
        ));
    }
    if let Some(t) = &src.opt_start_time {
        if crate::jetstream::time::parse_rfc3339(t).is_none() {
            return Err(ApiError::bad_request(&format!(
                "invalid opt_start_time {t:?}"
            )));
        }
    }
    let Some(ext) = &src.external else {
        return Ok(());
    };
    if !ext.deliver.is_empty() && !subject::is_valid_literal_subject(ext.deliver.as_bytes()) {
        let text = format!(
            "stream external delivery prefix {} must not contain wildcards",
            ext.deliver
        );
        return Err(err(10024, &text));
    }
    if !ext.api.is_empty() {
        if !subject::is_valid_literal_subject(ext.api.as_bytes()) {
            return Err(ApiError::invalid_config(&format!(
                "stream external api prefix {:?} must be a valid subject without wildcards",
                ext.api
            )));
        }
        if subject::overlaps(&ext.api, "$JS.API") {
            let text = format!(
                "stream external api prefix {} must not overlap with $JS.API",
                ext.api
            );
            return Err(err(10021, &text));
        }
    }
    Ok(())
}

/// Checks against the account's other streams (`others` looks one up by name): a mirror or
/// source may not take messages larger than the stream allows; a mirror answers direct gets
/// for its origin when the origin allows them; sources may not form a cycle.
pub(crate) fn check_against(
    cfg: &mut StreamConfig,
    others: impl Fn(&str) -> Option<StreamConfig>,
) -> Result<(), ApiError> {
    let too_big = |origin: &StreamConfig| {
        cfg.max_msg_size > 0 && origin.max_msg_size > 0 && cfg.max_msg_size < origin.max_msg_size
    };
    if let Some(m) = cfg.mirror.as_ref().filter(|m| m.external.is_none()) {
        if let Some(origin) = others(&m.name) {
            if too_big(&origin) {
                return Err(err(
                    10030,
                    "stream mirror must have max message size >= source",
                ));
            }
            cfg.mirror_direct = origin.allow_direct;
        }
    }
    for src in cfg
        .sources
        .iter()
        .flatten()
        .filter(|s| s.external.is_none())
    {
        if others(&src.name).is_some_and(|o| too_big(&o)) {
            return Err(err(
                10046,
                "stream source must have max message size >= target",
            ));
        }
    }
    if forms_cycle(cfg, &others) {
        return Err(ApiError::invalid_config("detected cycle"));
    }
    Ok(())
}

/// Whether following sources (and mirrors) from `cfg` through local streams comes back to a
/// stream already visited, with subjects the filter lets through.
fn forms_cycle(cfg: &StreamConfig, others: &impl Fn(&str) -> Option<StreamConfig>) -> bool {
    let mut to_visit = vec![cfg.clone()];
    let mut visited = std::collections::HashSet::new();
    while let Some(c) = to_visit.pop() {
        visited.insert(c.name.clone());
        for src in c.sources.iter().flatten().filter(|s| s.external.is_none()) {
            if visited.contains(&src.name) {
                let through = src.filter_subject.is_empty()
                    || c.subjects
                        .iter()
                        .any(|s| subject::overlaps(s, &src.filter_subject));
                if through {
                    return true;
                }
            } else if let Some(o) = others(&src.name) {
                to_visit.push(o);
            }
        }
        if let Some(m) = c.mirror.as_ref().filter(|m| m.external.is_none()) {
            if visited.contains(&m.name) {
                return true;
            }
            if let Some(o) = others(&m.name) {
                to_visit.push(o);
            }
        }
    }
    false
}

/// A mirror's configuration cannot change (removing it promotes the mirror to a plain
/// stream).
pub(crate) fn check_update(old: &StreamConfig, new: &StreamConfig) -> Result<(), ApiError> {
    if new.mirror.is_some() && new.mirror != old.mirror {
        return Err(err(10055, "stream mirror configuration can not be updated"));
    }
    Ok(())
}
