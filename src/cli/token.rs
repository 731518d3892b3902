//! `model-ledger token`: mints a development token signed with the data directory's dev key.
//!
//! Only a server started with `--dev-auth` on the same data directory accepts these tokens;
//! the key is created on first use so a fresh trial install needs no IdP.

use std::process::ExitCode;

use super::CliError;
use crate::auth;
use crate::config::{TokenArgs, parse_duration};

pub fn run(args: TokenArgs) -> Result<ExitCode, CliError> {
    let ttl = parse_duration(&args.ttl).map_err(CliError::Invalid)?;
    auth::dev::ensure_dev_key(&args.data_dir)?;
    let kind = if args.service_account {
        auth::PrincipalKind::ServiceAccount
    } else {
        auth::PrincipalKind::User
    };
    let token = auth::dev::mint_token(&args.data_dir, &args.sub, &args.groups, ttl, kind)?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}
