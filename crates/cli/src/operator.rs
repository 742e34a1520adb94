//! `myset operator ...`: thin over `myset_operator`.

use crate::args::OperatorCommand;
use anyhow::Context;

/// The uid given to a MySet read from a file, which the API server has not seen: owner
/// references need one. Objects owned by a uid that does not exist are deleted by the
/// garbage collector, so output applied by hand goes away rather than being adopted wrongly.
const PLACEHOLDER_UID: &str = "00000000-0000-0000-0000-000000000000";

pub async fn run(command: &OperatorCommand) -> anyhow::Result<()> {
    let text = match command {
        OperatorCommand::Run {
            namespace,
            lease_namespace,
            identity,
        } => {
            let identity = match identity {
                Some(id) => id.clone(),
                None => nix::unistd::gethostname()
                    .context("cannot read the host name; pass --identity")?
                    .to_string_lossy()
                    .into_owned(),
            };
            return myset_operator::operator::run(myset_operator::operator::Options {
                namespace: namespace.clone(),
                lease_namespace: lease_namespace.clone(),
                identity,
            })
            .await;
        }
        OperatorCommand::Crd => myset_operator::crd_yaml(),
        OperatorCommand::Render { file } => {
            let manifest = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let mut myset = myset_operator::parse_manifest(&manifest)
                .with_context(|| format!("{}", file.display()))?;
            if myset.metadata.uid.is_none() {
                eprintln!(
                    "note: {} has no metadata.uid; owner references use {PLACEHOLDER_UID} (the operator uses the real one)",
                    file.display()
                );
                myset.metadata.uid = Some(PLACEHOLDER_UID.into());
            }
            // Random credentials are generated here, at the edge; rendering stays pure.
            let secrets = myset_operator::generate_credentials();
            let objects = myset_operator::render(&myset, &secrets)
                .with_context(|| format!("{}", file.display()))?;
            myset_operator::to_yaml_stream(&objects).context("cannot print the objects")?
        }
    };
    crate::display::write_out(text.as_bytes());
    Ok(())
}
