//! `model-ledger token`: mints a development token signed with the data directory's dev key.
//!
//! Only a server started with `--dev-auth` on the same data directory accepts these tokens.
//! The server creates the key when it starts; this command only reads it, because a key made
//! here (in the wrong directory, say) would sign tokens no server accepts.

use std::process::ExitCode;

use super::CliError;
use crate::auth;
use crate::config::{TokenArgs, parse_duration};

pub fn run(args: TokenArgs) -> Result<ExitCode, CliError> {
    let ttl = parse_duration(&args.ttl).map_err(CliError::Invalid)?;
    let key = auth::dev::key_path(&args.data_dir);
    super::data_dir::require_file(&args.data_dir, &key, "the dev signing key")?;
    let kind = if args.service_account {
        auth::PrincipalKind::ServiceAccount
    } else {
        auth::PrincipalKind::User
    };
    let token = auth::dev::mint_token(&args.data_dir, &args.sub, &args.groups, ttl, kind)?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}
