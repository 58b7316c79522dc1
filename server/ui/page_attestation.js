// page_attestation.js - the evidence summary (TPM PCRs, SEV-SNP report
// fields, the TLS key it binds) and the keyward-attest command to verify it
// from outside.
import { h, alertBox, showError, table, copyBlock } from './dom.js';
import { api } from './api.js';

function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(([, v]) => v !== undefined && v !== null)
    .map(([k, v]) => [h('dt', {}, k), h('dd', {}, typeof v === 'string' || typeof v === 'number' ? h('code', {}, String(v)) : v)]));
}

export async function render(el, ctx) {
  const err = alertBox();
  el.append(err);
  let a;
  try {
    a = await api('GET', '/attestation');
  } catch (e) {
    showError(err, e);
    return;
  }
  if (!ctx.isCurrent()) return;
  if (!a.enabled) {
    el.append(h('p', { class: 'banner warn' }, 'Attestation is disabled on this appliance ([attestation] enable = false): there is no evidence to verify.'));
    return;
  }
  el.append(h('section', { 'aria-labelledby': 'at-sum' }, h('h2', { id: 'at-sum' }, 'Summary'),
    facts([['Image version', a.image_version], ['TLS key it binds (SHA-256 of the SubjectPublicKeyInfo)', a.tls_spki_sha256]]),
    h('p', { class: 'hint' }, 'Fresh evidence, made for this page with a random nonce. A verifier compares the TLS key hash with the certificate the main listener presents.')));
  const tpm = a.tpm || {};
  const tpmSec = h('section', { 'aria-labelledby': 'at-tpm' }, h('h2', { id: 'at-tpm' }, 'TPM'));
  if (tpm.available) {
    tpmSec.append(facts([['PCR bank', tpm.pcr_bank], ['Attestation key handle', tpm.ak_handle], ['EK certificate', tpm.ek_cert ? 'present' : 'absent']]),
      table(`PCRs (${tpm.pcr_bank || ''})`, ['PCR', 'Value'], Object.entries(tpm.pcrs || {})
        .sort((x, y) => Number(x[0]) - Number(y[0])).map(([i, v]) => [i, h('code', { class: 'hash' }, v)])));
  } else {
    tpmSec.append(h('p', {}, `No TPM evidence${tpm.absent ? `: ${tpm.absent}` : ''}.`));
  }
  const snp = a.snp || {};
  const snpSec = h('section', { 'aria-labelledby': 'at-snp' }, h('h2', { id: 'at-snp' }, 'AMD SEV-SNP'));
  if (snp.available) {
    snpSec.append(facts([['Source', snp.source], ['Measurement', snp.measurement], ['Policy', snp.policy], ['VMPL', snp.vmpl],
      ['Reported TCB', snp.reported_tcb], ['Chip ID', snp.chip_id]]));
  } else {
    snpSec.append(h('p', {}, `No SEV-SNP report${snp.absent ? `: ${snp.absent}` : ''}.`));
  }
  el.append(tpmSec, snpSec, h('section', { 'aria-labelledby': 'at-cmd' }, h('h2', { id: 'at-cmd' }, 'Verify from outside'),
    h('p', {}, 'Run on a machine you trust, with your policy file:'),
    copyBlock(a.verify_command || 'keyward-attest verify https://<host:port> --policy policy.json', 'verify command')));
}
